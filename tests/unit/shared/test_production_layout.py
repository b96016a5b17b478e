"""What a pod runs is ``shared`` and ``services``: the local stack (``tools/``) and the
synthetic test data stay out of it."""

from __future__ import annotations

import ast
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from click.testing import CliRunner

from services import cli

ROOT = Path(__file__).resolve().parents[3]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from shared import synthetic` imports the module shared.synthetic too
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return found


def test_no_production_module_imports_the_local_stack() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in imported_modules(path) if m.split(".")[0] == "tools")
        for folder in ("shared", "services")
        for path in (ROOT / folder).rglob("*.py")
    }
    assert {path: modules for path, modules in offenders.items() if modules} == {}


def test_the_local_stack_commands_come_from_the_checkout() -> None:
    shown = CliRunner().invoke(cli.main, ["--help"]).output
    assert {"demo", "up", "kafka"} <= {
        line.split()[0] for line in shown.splitlines() if line.startswith("  ")
    }


def test_an_installation_without_tools_has_no_local_stack_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in the image: the entry points are in the wheel's metadata, their modules are not."""
    missing = [EntryPoint("demo", "not_installed.stack.demo:demo", cli.LOCAL_STACK_COMMANDS)]
    monkeypatch.setattr(
        cli, "entry_points", lambda group: missing if group == cli.LOCAL_STACK_COMMANDS else []
    )
    result = CliRunner().invoke(cli.main, ["demo"])
    assert result.exit_code == 2 and "No such command 'demo'" in result.output
    assert "demo" not in CliRunner().invoke(cli.main, ["--help"]).output.split()


def test_no_production_module_imports_the_synthetic_genome() -> None:
    """The read simulator and the synthetic genome are test data; production code holds files
    to a profile by its name (``shared.profiles``) and reads M5s with the validator's own
    ``contig_md5s``. The embedded stack's synthetic reference is made by ``tools/stack``,
    which hands its path to the processes it starts (``GENOMHUB_REFERENCE_FASTA``)."""
    users = sorted(
        str(path.relative_to(ROOT))
        for folder in ("shared", "services")
        for path in (ROOT / folder).rglob("*.py")
        if path.name != "synthetic.py"
        and any(m == "shared.synthetic" or m.startswith("shared.synthetic.") for m in imported_modules(path))
    )
    assert users == []


def test_no_production_module_reads_the_local_broker_record() -> None:
    """Where the local broker records itself is the local stack's business: production code
    is told the broker by ``GENOMHUB_KAFKA_BOOTSTRAP``."""
    readers = sorted(
        str(path.relative_to(ROOT))
        for folder in ("shared", "services")
        for path in (ROOT / folder).rglob("*.py")
        if "broker.json" in path.read_text()
    )
    assert readers == []
