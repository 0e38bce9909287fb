"""Checking a provider's server makes the portal connect somewhere: a permission of its own, for
operators (support only looks)."""

from django.db import migrations

# The operators group receives it from apps.sync.staff_groups after migrate.


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
    ]
