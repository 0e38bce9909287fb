"""manage.py's start-up: the admin and the garbage collector after the start-up shortcuts
(admin modules loaded with the URLconf, the collector held off while Django starts)."""

import subprocess
import sys

from django.contrib import admin

from apps.sync.admin import SyncJobAdmin
from apps.sync.models import SyncJob
from portal.apps import check_registered_admins
from tests.conftest import REPO


def manage(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        env={"PATH": "/usr/bin:/bin", "IMAPCOPY_VAR_DIR": str(REPO / "var"), **(env or {})},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_system_checks_still_check_the_admin_pages(monkeypatch):
    # The admin modules are no longer imported at start-up: the check must load them itself,
    # or a broken admin page would pass `manage.py check` unnoticed.
    monkeypatch.setattr(SyncJobAdmin, "list_display", ["no_such_column", *SyncJobAdmin.list_display])
    errors = check_registered_admins(None)
    assert [e.id for e in errors] == ["admin.E108"]
    assert isinstance(admin.site._registry[SyncJob], SyncJobAdmin)


def test_admin_checks_load_the_admin_modules_that_start_up_no_longer_loads():
    script = (
        "from django.contrib import admin; from django.core import checks; from apps.sync.models import SyncJob; "
        "print(SyncJob in admin.site._registry); checks.run_checks(tags=['admin']); "
        "print(SyncJob in admin.site._registry)"
    )
    result = manage("shell", "--no-imports", "-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"]


def test_the_admin_is_served_although_it_is_not_loaded_at_start_up(admin_client):
    page = admin_client.get("/admin/sync/syncjob/")
    assert page.status_code == 200


def test_manage_py_reports_bad_settings_as_before():
    result = manage("check", env={"DEBUG": "maybe"})
    assert result.returncode != 0
    assert "DEBUG must be a boolean" in result.stderr


def test_manage_py_leaves_the_garbage_collector_running():
    # Held off while Django starts; a command running for hours must collect its garbage.
    result = manage("shell", "--no-imports", "-c", "import gc; print(gc.isenabled(), gc.get_freeze_count() > 10000)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]
