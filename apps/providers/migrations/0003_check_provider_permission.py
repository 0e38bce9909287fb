"""Checking a provider's server makes the portal connect somewhere: a permission of its own, for
operators (support only looks)."""

import importlib

from django.contrib.auth.management import create_permissions
from django.db import migrations


def grant_operators(apps, schema_editor):
    # Permissions are normally created after all migrations ran; the group needs this one now.
    app_config = apps.get_app_config("providers")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    staff_groups = importlib.import_module("apps.sync.migrations.0005_staff_groups")
    staff_groups.assign_groups(apps.get_model("auth", "Group"), apps.get_model("auth", "Permission"))


class Migration(migrations.Migration):
    dependencies = [
        ("providers", "0002_seed_presets"),
        ("sync", "0005_staff_groups"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="provider",
            options={
                "ordering": ["sort_order", "name"],
                "permissions": [("check_provider", "Can check that providers' servers answer")],
                "verbose_name": "provider",
                "verbose_name_plural": "providers",
            },
        ),
        migrations.RunPython(grant_operators, migrations.RunPython.noop),
    ]
