"""Settings: every variable is in the README's table as the sections define it, the
environment is the one source, and what a process lacks stops it with a message naming the
variable to set."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic.fields import FieldInfo

from services import cli
from shared.config import (
    RENAMED,
    SERVICE_SETTINGS,
    SHARED_PARTS,
    SITE_SERVICE_SETTINGS,
    ArchiveSettings,
    BillingSettings,
    HarmoniserSettings,
    IndexerSettings,
    KafkaSettings,
    ReceiverSettings,
    Section,
    SettingsError,
    StateSettings,
    TierSettings,
    TokenSettings,
    ValidatorSettings,
    database_urls,
    every_variable,
    variables,
)
from tools.stack.environment import LOCAL_STACK_PARTS

README = Path(__file__).resolve().parents[3] / "README.md"
GENOMHUB = str(Path(sys.executable).with_name("genomhub"))
NOT_OURS = {"OTEL_EXPORTER_OTLP_ENDPOINT"}
"""Rows of the table that OpenTelemetry's SDK reads itself."""


def shown(field: FieldInfo) -> str:
    """A field's default as the README's table writes it."""
    value: Any = field.get_default(call_default_factory=True)
    if value in (None, ""):
        return "unset"
    if isinstance(value, Path) and value.is_relative_to(Path.home()):
        return f"~/{value.relative_to(Path.home())}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) if value else "unset"
    if isinstance(value, list):
        return ", ".join(value)
    return str(getattr(value, "value", value))


def expected_rows() -> dict[str, str]:
    """Each variable's row of the README's table, from the sections."""
    rows = {}
    for section in (*SHARED_PARTS, *SERVICE_SETTINGS.values(), *SITE_SERVICE_SETTINGS.values(), *LOCAL_STACK_PARTS):
        for variable, name in variables(section).items():
            field = section.model_fields[name]
            rows[variable] = f"| `{variable}` | {shown(field)} | {field.description} |"
    return rows


def readme_rows() -> dict[str, str]:
    text = README.read_text()
    table = text[text.index("## Configuration") :]
    table = table[: table.index("\n## ")]
    return {
        line.split("`")[1]: line
        for line in table.splitlines()
        if line.startswith("| `") and line.split("`")[1] not in NOT_OURS
    }


def test_the_readme_table_is_every_setting_as_its_section_defines_it() -> None:
    expected, documented = expected_rows(), readme_rows()
    assert sorted(set(expected) - set(documented)) == [], "settings missing from README.md"
    assert sorted(set(documented) - set(expected)) == [], "README.md documents variables nothing reads"
    assert [v for v in expected if expected[v] != documented[v]] == [], "rows that differ from the sections"


def test_each_variable_is_read_by_one_section_under_its_prefix() -> None:
    claimed: dict[str, list[str]] = {}
    for section in (*SHARED_PARTS, *SERVICE_SETTINGS.values(), *SITE_SERVICE_SETTINGS.values()):
        for variable in variables(section):
            claimed.setdefault(variable, []).append(section.__name__)
    assert {v: s for v, s in claimed.items() if len(s) > 1} == {}
    assert set(claimed) == set(every_variable())
    for service, section in {**SERVICE_SETTINGS, **SITE_SERVICE_SETTINGS}.items():
        assert all(v.startswith(f"GENOMHUB_{service.upper()}_") for v in variables(section)), service
    assert not set(RENAMED) & set(claimed), "an old name is still read"


def test_settings_come_from_genomhub_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GENOMHUB_HOME", str(tmp_path))
    monkeypatch.setenv("GENOMHUB_TOKENS", '{"' + "a" * 64 + '": "ngc"}')
    monkeypatch.setenv("GENOMHUB_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("GENOMHUB_RECEIVER_MAX_UPLOADS", "7")
    monkeypatch.setenv("GENOMHUB_GE_RULE", "analysis")
    monkeypatch.delenv("GENOMHUB_STORE", raising=False)
    assert StateSettings().state_dir == tmp_path.resolve()
    assert TokenSettings().tokens == {"a" * 64: "ngc"}
    assert KafkaSettings().bootstrap_servers() == "127.0.0.1:1"
    assert ArchiveSettings().store_url == (tmp_path / "store").as_uri()
    receiver = ReceiverSettings()
    assert (receiver.max_uploads, receiver.port, receiver.kafka.bootstrap) == (7, 8480, "127.0.0.1:1")
    assert receiver.access.tokens == {"a" * 64: "ngc"}
    validator = ValidatorSettings()
    assert validator.genome_equivalents.rule == "analysis"
    assert validator.genome_equivalents.analysis_weights["WES"] == Decimal("0")


def test_the_databases_default_to_sqlite_in_the_state_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GENOMHUB_HOME", str(tmp_path))
    for variable in ("RECEIVER", "INDEXER", "BILLING", "HARMONISER", "ACCESS", "ARCHIVE", "PUBLISHER"):
        monkeypatch.delenv(f"GENOMHUB_{variable}_DATABASE_URL", raising=False)
    assert database_urls() == {
        "receiver": f"sqlite:///{tmp_path.resolve() / 'receiver.db'}",
        "indexer": f"sqlite:///{tmp_path.resolve() / 'catalogue.sqlite'}",
        "billing": f"sqlite:///{tmp_path.resolve() / 'billing.sqlite'}",
        "harmoniser": f"sqlite:///{tmp_path.resolve() / 'harmoniser' / 'jobs.sqlite'}",
        "access": f"sqlite:///{tmp_path.resolve() / 'access.sqlite'}",
        "archive": f"sqlite:///{tmp_path.resolve() / 'archive.sqlite'}",
        "publisher": f"sqlite:///{tmp_path.resolve() / 'publisher.sqlite'}",
    }
    monkeypatch.setenv("GENOMHUB_INDEXER_DATABASE_URL", "postgresql://db/catalogue")
    assert IndexerSettings().database_url == "postgresql://db/catalogue"
    assert BillingSettings().database_url.startswith("sqlite:///")


def test_the_tiers_default_to_folders_in_the_state_folder_and_cool_in_order(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GENOMHUB_HOME", str(tmp_path))
    monkeypatch.setenv("GENOMHUB_TIER_COLD", "s3://tape/archive")
    tiers = TierSettings()
    assert tiers.url("hot") == tiers.archive.store_url == (tmp_path / "store").as_uri()
    assert tiers.url("warm") == (tmp_path / "tiers" / "warm").as_uri()
    assert tiers.url("cold") == "s3://tape/archive"
    monkeypatch.setenv("GENOMHUB_TIER_LIFECYCLE", '{"raw": [200, 100]}')
    with pytest.raises(ValueError, match="raw: warm after 200 days must not come after cold after 100"):
        TierSettings()


@pytest.mark.parametrize("old", sorted(RENAMED))
def test_an_old_name_stops_every_section_and_names_the_new_one(
    monkeypatch: pytest.MonkeyPatch, old: str
) -> None:
    monkeypatch.setenv(old, "postgresql://db/genomhub")
    sections: list[type[Section]] = [*SHARED_PARTS, *SERVICE_SETTINGS.values(), *SITE_SERVICE_SETTINGS.values()]
    for section in sections:
        with pytest.raises(SettingsError, match=f"{old} was renamed: set {RENAMED[old]} instead"):
            section()


def test_an_old_name_stops_the_command_with_its_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENOMHUB_CATALOGUE_URL", "postgresql://db/genomhub")
    done = CliRunner().invoke(cli.main, ["db", "upgrade"])
    assert done.exit_code == 1
    assert "GENOMHUB_CATALOGUE_URL was renamed: set GENOMHUB_INDEXER_DATABASE_URL instead" in done.output
    assert "Traceback" not in done.output


def test_a_service_without_a_broker_stops_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Production code does not look for a local broker: the environment names one, or the
    process stops (the local stack sets the variable for what it starts)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENOMHUB_")}
    env["GENOMHUB_HOME"] = str(tmp_path)
    (tmp_path / "kafka").mkdir()
    (tmp_path / "kafka" / "broker.json").write_text('{"pid": 1, "bootstrap": "127.0.0.1:9"}')
    with pytest.raises(SettingsError, match="GENOMHUB_KAFKA_BOOTSTRAP"):
        KafkaSettings(bootstrap=None).bootstrap_servers()
    done = subprocess.run([GENOMHUB, "run", "indexer"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "no Kafka broker configured: set GENOMHUB_KAFKA_BOOTSTRAP" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_reference_is_what_the_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """No synthetic genome is built behind the process's back: a harmoniser with the local
    backend, or a validator holding files to the synthetic profile, needs the FASTA named."""
    monkeypatch.delenv("GENOMHUB_REFERENCE_FASTA", raising=False)
    from services.harmoniser.app import make_harmoniser

    with pytest.raises(SettingsError, match="set GENOMHUB_REFERENCE_FASTA"):
        make_harmoniser(HarmoniserSettings(backend="local"))
    validator = ValidatorSettings()
    assert validator.reference.fasta is None
    with pytest.raises(SettingsError, match="set GENOMHUB_REFERENCE_FASTA"):
        validator.reference.required_fasta()
