from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


class SyncConfig(AppConfig):
    name = "apps.sync"
    label = "sync"
    verbose_name = _("Synchronizations")

    def ready(self) -> None:
        from apps.sync.staff_groups import create_staff_groups

        post_migrate.connect(create_staff_groups, sender=self, dispatch_uid="imapcopy-staff-groups")
