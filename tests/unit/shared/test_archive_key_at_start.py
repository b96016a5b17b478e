"""The start-up key check every service touching archived bytes makes (shared.bus.Service), and
the retiring key that readers also try during a rotation."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from shared.bus import Service
from shared.config import (
    SERVICE_SETTINGS,
    ArchiveKeySettings,
    ArchiveSettings,
    KafkaSettings,
    SettingsError,
    StateSettings,
)
from shared.encryption import (
    ArchiveKey,
    BodyDecryptor,
    BodyEncryptor,
    HeaderKeyMismatch,
    check_archive_key,
    encrypt_chunks,
    load_archive_key,
    open_header,
    reencrypt_header,
    write_key_pair,
)

PASSPHRASE = "the start-up check's passphrase"
GENOMHUB = str(Path(sys.executable).with_name("genomhub"))
ARCHIVED = [name for name in SERVICE_SETTINGS if "archive" in SERVICE_SETTINGS[name].model_fields]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    return {
        name: write_key_pair(tmp_path_factory.mktemp(f"{name}-key"), PASSPHRASE) for name in ("old", "new")
    }


def _service(name: str, home: Path, **key: Any) -> Service:
    kafka = KafkaSettings(bootstrap="127.0.0.1:9", username="unused", password=SecretStr("unused"))
    state = StateSettings(home=home)
    archive = ArchiveSettings(state=state, key=ArchiveKeySettings(state=state, **key))
    settings: Any = SERVICE_SETTINGS[name]
    return Service(name, settings(kafka=kafka, state=state, archive=archive))


def test_the_services_that_touch_archived_bytes_are_the_ones_checked() -> None:
    assert set(ARCHIVED) >= {"receiver", "validator", "harmoniser"}
    for name in SERVICE_SETTINGS:
        kafka = KafkaSettings(bootstrap="127.0.0.1:9", username="unused", password=SecretStr("unused"))
        assert Service(name, SERVICE_SETTINGS[name](kafka=kafka)).touches_archive == (name in ARCHIVED)


def test_each_unusable_key_stops_with_the_setting_to_fix(
    tmp_path: Path, pairs: dict[str, tuple[Path, Path]]
) -> None:
    (old_secret, old_public), (new_secret, _) = pairs["old"], pairs["new"]
    cases: dict[str, dict[str, Any]] = {
        "GENOMHUB_ARCHIVE_SECRET_KEY: the archive secret key": {"key_passphrase": PASSPHRASE},
        "GENOMHUB_ARCHIVE_SECRET_KEY: the passphrase does not unlock": {
            "secret_key": old_secret,
            "public_key": old_public,
            "key_passphrase": "not the passphrase",
        },
        "GENOMHUB_ARCHIVE_PUBLIC_KEY: ": {
            "secret_key": new_secret,
            "public_key": old_public,
            "key_passphrase": PASSPHRASE,
        },
        "GENOMHUB_ARCHIVE_PREVIOUS_SECRET_KEY: the passphrase does not unlock": {
            "secret_key": old_secret,
            "public_key": old_public,
            "key_passphrase": PASSPHRASE,
            "previous_secret_key": new_secret,
            "previous_key_passphrase": "not the passphrase",
        },
        "GENOMHUB_ARCHIVE_PREVIOUS_SECRET_KEY: it is the current archive key": {
            "secret_key": old_secret,
            "public_key": old_public,
            "key_passphrase": PASSPHRASE,
            "previous_secret_key": old_secret,
        },
    }
    for said, key in cases.items():
        service = _service("validator", tmp_path, **key)
        with pytest.raises(SettingsError) as raised:
            _ = service.archive_key
        message = str(raised.value)
        assert message.startswith(f"validator cannot start: {said}"), message
        assert "\n" not in message and PASSPHRASE not in message and "not the passphrase" not in message
    fine = _service(
        "validator", tmp_path, secret_key=old_secret, public_key=old_public, key_passphrase=PASSPHRASE
    )
    assert fine.archive_key == load_archive_key(old_secret, old_public, PASSPHRASE)


@pytest.mark.parametrize("service", ["validator"])
def test_genomhub_run_stops_at_start_on_a_wrong_passphrase(
    service: str, tmp_path: Path, pairs: dict[str, tuple[Path, Path]]
) -> None:
    secret, public = pairs["old"]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GENOMHUB_")},
        "GENOMHUB_HOME": str(tmp_path),
        "GENOMHUB_KAFKA_BOOTSTRAP": "127.0.0.1:9",
        "GENOMHUB_KAFKA_USERNAME": "unused",
        "GENOMHUB_KAFKA_PASSWORD": "unused",
        "GENOMHUB_REFERENCE_FASTA": str(tmp_path / "reference.fa"),
        "GENOMHUB_ARCHIVE_SECRET_KEY": str(secret),
        "GENOMHUB_ARCHIVE_PUBLIC_KEY": str(public),
        "GENOMHUB_ARCHIVE_KEY_PASSPHRASE": "a wrong passphrase",
    }
    (tmp_path / "reference.fa").write_text(">chr1\nACGT\n")
    result = subprocess.run([GENOMHUB, "run", service], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert lines == [
        f"Error: {service} cannot start: GENOMHUB_ARCHIVE_SECRET_KEY: the passphrase does not unlock "
        f"{secret} (GENOMHUB_ARCHIVE_KEY_PASSPHRASE is wrong)"
    ], result.stderr
    assert "a wrong passphrase" not in result.stderr + result.stdout


def _file(recipient: bytes, size: int = 200_000) -> tuple[bytes, bytes, bytes]:
    plaintext = os.urandom(size)
    encryptor = BodyEncryptor(recipient)
    body = b"".join(encrypt_chunks(encryptor, [plaintext]))
    return plaintext, encryptor.header, body


def test_during_a_rotation_readers_open_headers_of_both_keys(
    tmp_path: Path, pairs: dict[str, tuple[Path, Path]]
) -> None:
    (old_secret, old_public), (new_secret, new_public) = pairs["old"], pairs["new"]
    old = load_archive_key(old_secret, old_public, PASSPHRASE)
    window = check_archive_key(
        ArchiveKeySettings(
            state=StateSettings(home=tmp_path),
            secret_key=new_secret,
            public_key=new_public,
            key_passphrase=PASSPHRASE,
            previous_secret_key=old_secret,
        )
    )
    assert window.previous == old and window.current == load_archive_key(new_secret, new_public, PASSPHRASE)
    plaintext, header, body = _file(old.public)
    assert BodyDecryptor(header, io.BytesIO(body), window, len(plaintext)).read() == plaintext
    rotated = reencrypt_header(header, window, window.public)
    assert open_header(rotated, window.current) == open_header(header, old)
    with pytest.raises(HeaderKeyMismatch, match="nor the retiring"):
        open_header(_file(ArchiveKey(*load_other(tmp_path)).public)[1], window)
    with pytest.raises(HeaderKeyMismatch):
        open_header(rotated, old)  # the retiring key opens no rotated header


def load_other(tmp_path: Path) -> tuple[bytes, bytes]:
    secret, public = write_key_pair(tmp_path / "other", PASSPHRASE)
    key = load_archive_key(secret, public, PASSPHRASE)
    return key.public, key.secret
