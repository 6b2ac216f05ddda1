"""The dependency rule: the core (domain, services, ports) imports no I/O library."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "orchestrator"
FORBIDDEN = {"celery", "kombu", "httpx", "sqlmodel", "sqlalchemy", "redis", "fastapi",
             "starlette", "uvicorn", "alembic", "typer", "rich", "orchestrator.adapters",
             "orchestrator.api", "orchestrator.cli", "workers"}
# Pure computation the domain may lean on: croniter matches cron fields against wall times
# (no I/O, no clock of its own: time is always passed in).
PURE_LIBRARIES = {"croniter"}
CORE = sorted([*ROOT.joinpath("domain").glob("*.py"), *ROOT.joinpath("services").glob("*.py"),
               ROOT / "ports.py"])


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_module_imports_no_io_library(path: Path) -> None:
    bad = {name for name in imported(path)
           if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)}
    assert not bad, f"{path.name} imports {sorted(bad)}"


def test_domain_imports_only_the_standard_library_pure_libraries_and_itself() -> None:
    for path in ROOT.joinpath("domain").glob("*.py"):
        for name in imported(path):
            top = name.split(".")[0]
            allowed = {"__future__", "orchestrator", *PURE_LIBRARIES}
            assert top in allowed or top in _stdlib(), (path, name)


def _stdlib() -> set[str]:
    import sys

    return set(sys.stdlib_module_names)
