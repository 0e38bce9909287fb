"""What the README promises: every setting is in its table, `./dev` installs exactly the locked
requirements, checked against their hashes, and `./dev test` runs the suite on two processes."""

from __future__ import annotations

import ast
import re
import subprocess

from tests.conftest import REPO

README = REPO / "README.md"


def settings_read_from_the_environment() -> list[str]:
    """The variable names portal/settings.py passes to its env_* helpers (portal/envconfig.py)."""
    tree = ast.parse((REPO / "portal" / "settings.py").read_text())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id.startswith("env_"):
            first = node.args[0] if node.args else None
            assert isinstance(first, ast.Constant), f"line {node.lineno}: the variable's name must be a literal"
            names.append(first.value)
    return list(dict.fromkeys(names))


def configuration_table() -> set[str]:
    """The variables named in the first column of the README's Configuration table."""
    section = README.read_text().split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    names = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]*)`", line.split("|")[1]))
    return names


def test_every_setting_is_in_the_readmes_table():
    read = settings_read_from_the_environment()
    assert len(read) > 50  # the parser found the settings, not nothing
    missing = [name for name in read if name not in configuration_table()]
    assert missing == [], f"portal/settings.py reads these, the README's Configuration table lacks them: {missing}"


def test_the_readmes_table_names_no_setting_that_is_not_read():
    stale = configuration_table() - set(settings_read_from_the_environment())
    assert stale == set(), f"the README's Configuration table names variables no one reads: {sorted(stale)}"


# --- Locked requirements ----------------------------------------------------------------------


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path) -> dict[str, str]:
    """name -> version of every `name==version` line (extras dropped, -r lines skipped)."""
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", line)
        if match:
            found[canonical(match.group(1))] = match.group(2)
    return found


def hashes_per_package(path) -> dict[str, int]:
    """name -> how many --hash lines follow its pin."""
    counts, current = {}, None
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", line)
        if match:
            current = canonical(match.group(1))
            counts[current] = 0
        elif current and line.strip().startswith("--hash=sha256:"):
            counts[current] += 1
    return counts


def test_each_lock_pins_its_requirements_at_the_same_versions():
    """Editing requirements*.txt without `./dev lock` would leave ./dev installing the old versions."""
    run = pins(REPO / "requirements.txt")
    for requirements, lock, wanted in [
        ("requirements.txt", "requirements.lock", run),
        ("requirements-dev.txt", "requirements-dev.lock", run | pins(REPO / "requirements-dev.txt")),
    ]:
        locked = pins(REPO / lock)
        differ = {name: (version, locked.get(name)) for name, version in wanted.items() if locked.get(name) != version}
        assert differ == {}, f"{lock} is out of date with {requirements} (run ./dev lock): {differ}"


def test_the_run_and_test_locks_agree_and_every_file_has_a_hash():
    run, test = pins(REPO / "requirements.lock"), pins(REPO / "requirements-dev.lock")
    assert {name: test.get(name) for name in run} == run
    for lock in ("requirements.lock", "requirements-dev.lock"):
        unhashed = [name for name, count in hashes_per_package(REPO / lock).items() if count == 0]
        assert unhashed == [], f"{lock}: pip install --require-hashes refuses {unhashed}"


def test_dev_installs_from_the_locks_with_their_hashes():
    dev = (REPO / "dev").read_text()
    assert "--require-hashes -r requirements.lock" in dev
    assert "--require-hashes -r requirements-dev.lock" in dev


# --- ./dev test on two processes ----------------------------------------------------------------


def pytest_command_of(tmp_path, *args: str, **env: str) -> str:
    """The pytest command line `./dev test ARGS` runs, on a machine where every tool only logs."""
    from tests.sync.test_admin_experience import fake_machine

    tmp_path.mkdir()
    project, log, machine_env = fake_machine(tmp_path)
    subprocess.run(["bash", "dev", "test", *args], cwd=project, env={**machine_env, **env}, check=True, timeout=60)
    return next(line for line in log.read_text().splitlines() if "-m pytest" in line)


def test_dev_test_runs_the_suite_on_two_processes_unless_told_otherwise(tmp_path):
    assert pytest_command_of(tmp_path / "default", "-q").split() == ["python", "-m", "pytest", "-n", "2", "-q"]
    assert "-n 2" not in pytest_command_of(tmp_path / "one", "-p", "no:xdist")
    assert pytest_command_of(tmp_path / "four", "-n", "4").split()[3:] == ["-n", "4"]
    assert pytest_command_of(tmp_path / "env", IMAPCOPY_TEST_PROCESSES="1").split()[3:] == ["-n", "1"]
