"""Two staff groups: support (look, re-send reports) and operators (run the service)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

SUPPORT = [
    ("sync", "view_syncjob"),
    ("sync", "view_folderprogress"),
    ("sync", "view_jobevent"),
    ("sync", "resend_report_syncjob"),
    ("providers", "view_provider"),
]
OPERATORS = SUPPORT + [
    ("sync", "cancel_syncjob"),
    ("sync", "retry_syncjob"),
    ("sync", "erase_syncjob"),
    ("sync", "export_syncjob"),
    ("providers", "add_provider"),
    ("providers", "change_provider"),
    ("providers", "check_provider"),  # created by providers 0003, which gives it to operators then
    ("mailboxes", "view_mailaccount"),
    ("django_rq", "admin"),
]


def make_groups(apps, schema_editor):
    # Permissions are normally created after all migrations ran; these groups need them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    assign_groups(apps.get_model("auth", "Group"), apps.get_model("auth", "Permission"))


def assign_groups(Group, Permission):
    for name, codes in (("support", SUPPORT), ("operators", OPERATORS)):
        group, _created = Group.objects.get_or_create(name=name)
        for app_label, codename in codes:
            permission = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
            if permission is not None:
                group.permissions.add(permission)


def remove_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=["support", "operators"]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("sync", "0004_job_heartbeat"),
        ("providers", "0002_seed_presets"),
        ("mailboxes", "0002_connection_test_findings"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("django_rq", "0003_alter_dashboard_permission_names"),
    ]

    operations = [migrations.RunPython(make_groups, remove_groups)]
