"""Once made the two staff groups here, forcing Django to create the permissions early. The groups
are now made after every migrate (apps.sync.staff_groups, a post_migrate handler); this migration
stays, empty, because later ones depend on it."""

from django.db import migrations

from apps.sync.staff_groups import assign_groups  # noqa: F401  (kept for callers that import it from here)


class Migration(migrations.Migration):
    dependencies = [
        ("sync", "0004_job_heartbeat"),
        ("providers", "0002_seed_presets"),
        ("mailboxes", "0002_connection_test_findings"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("django_rq", "0003_alter_dashboard_permission_names"),
    ]

    operations = []
