"""The local stack's own archive key: made once under its home, and the one its services load."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import ArchiveKeySettings, StateSettings
from shared.encryption import check_archive_key, write_key_pair
from tools.stack.environment import StackSettings


def _loads(home: Path, passphrase: str) -> str:
    settings = ArchiveKeySettings(state=StateSettings(home=home), key_passphrase=passphrase)
    return check_archive_key(settings).fingerprint


def test_a_fresh_stack_makes_a_key_its_services_load_and_keeps_it(tmp_path: Path) -> None:
    stack = StackSettings.fresh(tmp_path / "home", tmp_path / "cache")
    passphrase = stack.local_archive_key(None)
    kept = tmp_path / "home" / "keys" / "passphrase"
    assert kept.stat().st_mode & 0o077 == 0 and passphrase not in str(stack)
    fingerprint = _loads(tmp_path / "home", passphrase)
    assert stack.local_archive_key(None) == passphrase  # the next start uses the same key
    assert _loads(tmp_path / "home", passphrase) == fingerprint


def test_a_configured_passphrase_locks_the_stacks_key_and_is_not_written_down(tmp_path: Path) -> None:
    stack = StackSettings.fresh(tmp_path / "home", tmp_path / "cache")
    assert stack.local_archive_key("the operator's") == "the operator's"
    assert not (tmp_path / "home" / "keys" / "passphrase").exists()
    _loads(tmp_path / "home", "the operator's")


def test_a_key_without_its_passphrase_is_refused(tmp_path: Path) -> None:
    write_key_pair(tmp_path / "home" / "keys", "somebody's")
    with pytest.raises(RuntimeError, match="set GENOMHUB_ARCHIVE_KEY_PASSPHRASE"):
        StackSettings.fresh(tmp_path / "home", tmp_path / "cache").local_archive_key(None)
