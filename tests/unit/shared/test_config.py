"""Every setting is documented in the README, and the environment is the one source."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import Settings

README = Path(__file__).resolve().parents[3] / "README.md"


def test_every_setting_is_in_the_readme() -> None:
    text = README.read_text()
    missing = [name for name in Settings.model_fields if f"`GENOMHUB_{name.upper()}`" not in text]
    assert not missing, f"README.md does not document {missing}"


def test_settings_come_from_genomhub_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GENOMHUB_HOME", str(tmp_path))
    monkeypatch.setenv("GENOMHUB_TOKENS", '{"' + "a" * 64 + '": "ngc"}')
    monkeypatch.setenv("GENOMHUB_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    settings = Settings()
    assert settings.state_dir == tmp_path.resolve()
    assert settings.tokens == {"a" * 64: "ngc"}
    assert settings.bootstrap_servers() == "127.0.0.1:1"
    assert settings.store_url == (tmp_path / "store").as_uri()


def test_the_local_broker_record_is_where_processes_find_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("GENOMHUB_KAFKA_BOOTSTRAP", raising=False)
    settings = Settings(home=tmp_path)
    with pytest.raises(RuntimeError, match="genomhub kafka start"):
        settings.bootstrap_servers()
    (tmp_path / "kafka").mkdir()
    (tmp_path / "kafka" / "broker.json").write_text('{"pid": 1, "bootstrap": "127.0.0.1:9"}')
    assert settings.bootstrap_servers() == "127.0.0.1:9"
