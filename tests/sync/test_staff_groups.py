"""The staff groups come from a post_migrate handler (apps.sync.staff_groups), not from a migration
that forces Django to create permissions early: a fresh database gets both groups with every
permission they need, and each later migrate gives back what a group lacks."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command

from apps.sync.staff_groups import OPERATORS, SUPPORT
from tests.conftest import REPO

EXPECTED = {"support": set(SUPPORT), "operators": set(OPERATORS)}


def test_a_fresh_database_gets_both_groups_with_all_their_permissions(tmp_path):
    database = tmp_path / "fresh.sqlite3"
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
        env={"PATH": "/usr/bin:/bin", "IMAPCOPY_VAR_DIR": str(tmp_path), "DATABASE_URL": f"sqlite:///{database}"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    rows = sqlite3.connect(database).execute(
        "SELECT g.name, ct.app_label, p.codename FROM auth_group g"
        " JOIN auth_group_permissions gp ON gp.group_id = g.id"
        " JOIN auth_permission p ON p.id = gp.permission_id"
        " JOIN django_content_type ct ON ct.id = p.content_type_id"
    )
    granted: dict[str, set] = {}
    for group, app_label, codename in rows:
        granted.setdefault(group, set()).add((app_label, codename))
    assert granted == EXPECTED


@pytest.mark.django_db
def test_migrate_gives_back_a_deleted_group_and_keeps_what_staff_added():
    support = Group.objects.get(name="support")
    extra = Permission.objects.get(content_type__app_label="sync", codename="cancel_syncjob")
    support.permissions.add(extra)
    Group.objects.filter(name="operators").delete()

    call_command("migrate", verbosity=0)

    operators = Group.objects.get(name="operators")
    assert {(p.content_type.app_label, p.codename) for p in operators.permissions.all()} == EXPECTED["operators"]
    assert extra in support.permissions.all(), "a permission granted by hand stays"
