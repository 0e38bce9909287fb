"""The layers point one way: production code never imports the tests, the job's code never imports
the customer's pages, and the copy engine stays free of Django (the command line and the
benchmarks run it bare). Read from the source with ast, imports inside functions included: a lazy
import is still a dependency."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = ("apps", "portal", "bench", "manage.py")


def python_files(*parts: str) -> list[Path]:
    files = []
    for part in parts:
        path = ROOT / part
        files.extend([path] if path.is_file() else sorted(path.rglob("*.py")))
    return files


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module the file imports, absolute (`from . import x` resolved against its package)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # `from apps.selfservice import status_views` imports the submodule too.
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def offenders(files: list[Path], forbidden) -> dict[str, list[str]]:
    found = {}
    for path in files:
        bad = sorted(name for name in imported_modules(path) if forbidden(name))
        if bad:
            found[str(path.relative_to(ROOT))] = bad
    return found


def is_within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_production_code_never_imports_the_tests():
    assert offenders(python_files(*PRODUCTION), lambda name: is_within(name, "tests")) == {}


def test_the_sync_app_never_imports_the_customer_pages():
    views = ("apps.selfservice.views", "apps.selfservice.status_views")
    found = offenders(python_files("apps/sync"), lambda name: any(is_within(name, view) for view in views))
    assert found == {}


def test_the_copy_engine_imports_no_django():
    engine = python_files("apps/sync/engine")
    assert len(engine) > 10, "the engine's modules were found"

    def outside_the_engine(name: str) -> bool:
        return is_within(name, "django") or (is_within(name, "apps") and not is_within(name, "apps.sync.engine"))

    assert offenders(engine, outside_the_engine) == {}


@pytest.mark.parametrize(
    ("source", "imports"),
    [
        ("import tests.support.dovecot\n", "tests.support.dovecot"),
        ("def later():\n    from tests.support import mail\n", "tests.support.mail"),
        ("from ..views import status_url\n", "apps.selfservice.views.status_url"),
    ],
    ids=["plain", "lazy", "relative"],
)
def test_the_walk_sees_plain_lazy_and_relative_imports(tmp_path, monkeypatch, source, imports):
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    module = tmp_path / "apps" / "selfservice" / "sub" / "probe.py"
    module.parent.mkdir(parents=True)
    module.write_text(source)
    assert imports in imported_modules(module)
