"""Two staff groups: support (look, write notes, re-send reports) and operators (run the service).

They are made after every `migrate`, once Django has created the permissions (a post_migrate
handler, connected in SyncConfig.ready): a migration cannot rely on permissions, which Django
creates only after the last migration has run. Each run adds what a group lacks and removes
nothing, so a permission staff granted by hand stays."""

from __future__ import annotations

from django.apps import apps as global_apps

SUPPORT = [
    ("sync", "view_syncjob"),
    ("sync", "change_syncjob"),  # the staff note: every other field of a job is read-only
    ("sync", "view_folderprogress"),
    ("sync", "view_jobevent"),
    ("sync", "resend_report_syncjob"),
    ("providers", "view_provider"),
]
OPERATORS = [
    *SUPPORT,
    ("sync", "cancel_syncjob"),
    ("sync", "retry_syncjob"),
    ("sync", "erase_syncjob"),
    ("sync", "export_syncjob"),
    ("providers", "add_provider"),
    ("providers", "change_provider"),
    ("providers", "check_provider"),  # checking a server makes the portal connect somewhere
    ("mailboxes", "view_mailaccount"),
    ("django_rq", "admin"),
]
GROUPS = {"support": SUPPORT, "operators": OPERATORS}


def assign_groups(Group, Permission, *, using: str = "default") -> None:
    """Create both groups, each with at least its permissions (those that exist)."""
    for name, codes in GROUPS.items():
        group, _created = Group.objects.using(using).get_or_create(name=name)
        for app_label, codename in codes:
            permission = (
                Permission.objects.using(using).filter(content_type__app_label=app_label, codename=codename).first()
            )
            if permission is not None:
                group.permissions.add(permission)


def create_staff_groups(sender, *, apps=global_apps, using: str = "default", **kwargs) -> None:
    """post_migrate, sent for the sync app: Django's own handler has created the permissions of
    the apps before it in INSTALLED_APPS (auth, django_rq, providers, mailboxes) and its own.
    `apps` is the migrated state after migrate; flush (the tests' teardown) sends none."""
    assign_groups(apps.get_model("auth", "Group"), apps.get_model("auth", "Permission"), using=using)
