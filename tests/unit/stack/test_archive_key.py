"""The local stack makes its archive key and its hub key on its first start, and its services
unlock them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from shared.config import ArchiveKeySettings, HubKeySettings, StateSettings
from shared.encryption import check_archive_key, write_key_pair
from shared.feed import hub_signing_key, key_id
from tools.stack.environment import StackSettings


def _check(env: dict[str, str]) -> str:
    """The services' start-up check, in the environment the stack gives them."""
    settings = ArchiveKeySettings(
        state=StateSettings(home=Path(env["GENOMHUB_HOME"])),
        key_passphrase=env["GENOMHUB_ARCHIVE_KEY_PASSPHRASE"],
    )
    return check_archive_key(settings).fingerprint


def test_a_fresh_stack_makes_its_key_once_and_keeps_it(tmp_path: Path) -> None:
    stack = StackSettings.fresh(tmp_path / "home", tmp_path / "cache")
    base = {k: v for k, v in os.environ.items() if not k.startswith("GENOMHUB_ARCHIVE_")}
    base["GENOMHUB_HOME"] = str(stack.state_dir)
    first = base | stack.archive_key(base)
    again = base | stack.archive_key(base)
    assert first["GENOMHUB_ARCHIVE_KEY_PASSPHRASE"] == again["GENOMHUB_ARCHIVE_KEY_PASSPHRASE"]
    assert _check(first) == _check(again)  # the same key, not a new one per start
    kept = stack.state_dir / "keys" / "passphrase"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600


def test_a_passphrase_or_key_from_the_environment_is_used_as_it_is(tmp_path: Path) -> None:
    stack = StackSettings.fresh(tmp_path / "home", tmp_path / "cache")
    env = {"GENOMHUB_HOME": str(stack.state_dir), "GENOMHUB_ARCHIVE_KEY_PASSPHRASE": "chosen by the operator"}
    assert stack.archive_key(env) == {}
    assert _check(env)
    assert not (stack.state_dir / "keys" / "passphrase").exists()
    elsewhere = StackSettings.fresh(tmp_path / "other", tmp_path / "cache")
    assert elsewhere.archive_key({"GENOMHUB_ARCHIVE_SECRET_KEY": "/run/secrets/archive.sec"}) == {}
    assert not (elsewhere.state_dir / "keys").exists()


def test_a_key_without_its_passphrase_is_refused(tmp_path: Path) -> None:
    write_key_pair(tmp_path / "home" / "keys", "somebody's")
    with pytest.raises(RuntimeError, match="set GENOMHUB_ARCHIVE_KEY_PASSPHRASE"):
        StackSettings.fresh(tmp_path / "home", tmp_path / "cache").archive_key({})


def test_a_fresh_stack_makes_its_hub_key_once_under_the_kept_passphrase(tmp_path: Path) -> None:
    stack = StackSettings.fresh(tmp_path / "home", tmp_path / "cache")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GENOMHUB_ARCHIVE_", "GENOMHUB_HUB_"))}
    base["GENOMHUB_HOME"] = str(stack.state_dir)

    def signer(env: dict[str, str]) -> str:
        settings = HubKeySettings(  # the stack's own key, not one named by this test session's environment
            state=StateSettings(home=Path(env["GENOMHUB_HOME"])),
            secret_key=None,
            public_key=None,
            key_passphrase=env["GENOMHUB_HUB_KEY_PASSPHRASE"],
        )
        return key_id(hub_signing_key(settings).public_key())

    first = base | stack.archive_key(base) | stack.hub_key(base)
    again = base | stack.hub_key(base)
    assert first["GENOMHUB_HUB_KEY_PASSPHRASE"] == first["GENOMHUB_ARCHIVE_KEY_PASSPHRASE"]
    assert signer(first) == signer(again)  # the same key: a feed is one key's
    assert stack.hub_key({"GENOMHUB_HUB_SECRET_KEY": "/run/secrets/hub.sec"}) == {}
