"""Crypt4GH encryption at rest (shared/encryption.py): round trips, the real `crypt4gh`
command line both ways, and each way an encrypted file or a key can be unusable."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from services.cli import main
from shared.config import ArchiveKeySettings, StateSettings
from shared.encryption import (
    CIPHER_SEGMENT_SIZE,
    SEGMENT_SIZE,
    ArchiveKey,
    ArchiveKeyError,
    BodyDecryptor,
    BodyEncryptor,
    ForeignHeader,
    HeaderKeyMismatch,
    MalformedHeader,
    OverlongBody,
    SegmentAuthenticationError,
    TruncatedBody,
    body_size,
    check_archive_key,
    encrypt_chunks,
    load_archive_key,
    open_header,
    read_public_key,
    reencrypt_header,
    split_header,
    write_key_pair,
)

PASSPHRASE = "correct horse battery staple"
BIN = Path(sys.executable).parent


def _key_pair(directory: Path) -> tuple[ArchiveKey, Path, Path]:
    secret, public = write_key_pair(directory, PASSPHRASE)
    return load_archive_key(secret, public, PASSPHRASE), secret, public


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[ArchiveKey, Path, Path]:
    return _key_pair(tmp_path_factory.mktemp("archive-key"))


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> tuple[ArchiveKey, Path, Path]:
    return _key_pair(tmp_path_factory.mktemp("other-key"))


def _encrypt(plaintext: bytes, recipient: bytes, chunk: int = 100_000) -> tuple[bytes, bytes]:
    encryptor = BodyEncryptor(recipient)
    chunks = (plaintext[i : i + chunk] for i in range(0, len(plaintext), chunk))
    body = b"".join(encrypt_chunks(encryptor, chunks))
    return encryptor.header, body


def _decrypt(header: bytes, body: bytes, key: ArchiveKey, plaintext_size: int | None = None) -> bytes:
    reader = io.BufferedReader(BodyDecryptor(header, io.BytesIO(body), key, plaintext_size))
    return reader.read()


def _crypt4gh(*args: str, stdin: bytes = b"") -> bytes:
    """The ``crypt4gh`` package's own command line (``crypt4gh``, ``crypt4gh-keygen``): its
    stdout. The passphrase goes where the command line reads it, C4GH_PASSPHRASE."""
    result = subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        input=stdin,
        capture_output=True,
        env={**os.environ, "C4GH_PASSPHRASE": PASSPHRASE},
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


SIZES = [0, 1, 65535, 65536, 65537, 3 * SEGMENT_SIZE * 11 + 17]
"""The segment edges, and a few MB that ends inside a segment."""
CHUNKINGS = [
    (size, chunk)
    for size in SIZES
    for chunk in (1, 4096, 65536, 1 << 22)
    if chunk > 1 or size <= 65537  # byte by byte only where it crosses an edge, not for MBs
]


@pytest.mark.parametrize(
    ("size", "chunk"), CHUNKINGS, ids=[f"{s}-bytes-in-chunks-of-{c}" for s, c in CHUNKINGS]
)
def test_round_trip_at_segment_edges(archive: tuple[ArchiveKey, Path, Path], size: int, chunk: int) -> None:
    key = archive[0]
    plaintext = os.urandom(size)
    encryptor = BodyEncryptor(key.public)
    body = b"".join(encrypt_chunks(encryptor, (plaintext[i : i + chunk] for i in range(0, size, chunk))))
    assert len(body) == body_size(size) == encryptor.body_size
    assert encryptor.plaintext_size == size
    assert _decrypt(encryptor.header, body, key, size) == plaintext
    segments = list(BodyDecryptor(encryptor.header, io.BytesIO(body), key, size).segments())
    assert b"".join(segments) == plaintext
    assert [len(s) for s in segments[:-1]] == [SEGMENT_SIZE] * (len(segments) - 1)


def test_every_file_has_its_own_data_key(archive: tuple[ArchiveKey, Path, Path]) -> None:
    key = archive[0]
    first, second = BodyEncryptor(key.public), BodyEncryptor(key.public)
    assert open_header(first.header, key) != open_header(second.header, key)


def test_small_reads_through_readinto(archive: tuple[ArchiveKey, Path, Path]) -> None:
    key = archive[0]
    plaintext = os.urandom(2 * SEGMENT_SIZE + 999)
    header, body = _encrypt(plaintext, key.public)
    raw = BodyDecryptor(header, io.BytesIO(body), key, len(plaintext))
    buffer, out = bytearray(1000), bytearray()
    while count := raw.readinto(buffer):
        out += buffer[:count]
    assert out == plaintext


def test_our_file_decrypts_with_the_crypt4gh_command_line(archive: tuple[ArchiveKey, Path, Path]) -> None:
    key, secret_path, _ = archive
    plaintext = os.urandom(SEGMENT_SIZE * 3 + 12345)
    header, body = _encrypt(plaintext, key.public)
    assert _crypt4gh("crypt4gh", "decrypt", "--sk", str(secret_path), stdin=header + body) == plaintext


def test_a_file_the_command_line_encrypted_for_us_decrypts_split(
    archive: tuple[ArchiveKey, Path, Path],
) -> None:
    key, _, public_path = archive
    plaintext = os.urandom(SEGMENT_SIZE * 2 + 7)
    encrypted = _crypt4gh("crypt4gh", "encrypt", "--recipient_pk", str(public_path), stdin=plaintext)
    stream = io.BytesIO(encrypted)
    header = split_header(stream)
    body = stream.read()
    assert header + body == encrypted
    assert len(body) == body_size(len(plaintext))
    assert _decrypt(header, body, key, len(plaintext)) == plaintext


def test_a_key_made_by_crypt4gh_keygen_loads(tmp_path: Path) -> None:
    secret, public = tmp_path / "their.sec", tmp_path / "their.pub"
    # the new key's passphrase is prompted for, twice, and read from stdin without a tty
    _crypt4gh(
        "crypt4gh-keygen", "--sk", str(secret), "--pk", str(public), stdin=f"{PASSPHRASE}\n".encode() * 2
    )
    key = load_archive_key(secret, public, PASSPHRASE)
    header, body = _encrypt(b"ACGT" * 1000, key.public)
    assert _decrypt(header, body, key) == b"ACGT" * 1000


def test_a_sliced_file_is_refused(archive: tuple[ArchiveKey, Path, Path]) -> None:
    key, secret_path, _ = archive
    header, body = _encrypt(os.urandom(5000), key.public)
    # `rearrange` adds an edit list packet to the header
    sliced = _crypt4gh(
        "crypt4gh", "rearrange", "--sk", str(secret_path), "--range", "10-2000", stdin=header + body
    )
    with pytest.raises(MalformedHeader, match="edit list"):
        open_header(split_header(io.BytesIO(sliced)), key)


def test_a_corrupted_segment_is_named_and_never_read(archive: tuple[ArchiveKey, Path, Path]) -> None:
    key = archive[0]
    plaintext = os.urandom(SEGMENT_SIZE * 4)
    header, body = _encrypt(plaintext, key.public)
    damaged = bytearray(body)
    damaged[2 * CIPHER_SEGMENT_SIZE + 500] ^= 0x01
    reader = BodyDecryptor(header, io.BytesIO(bytes(damaged)), key, len(plaintext))
    delivered: list[bytes] = []
    with pytest.raises(SegmentAuthenticationError, match="segment 2 ") as failure:
        delivered.extend(reader.segments())
    assert failure.value.segment == 2
    assert not isinstance(failure.value, ForeignHeader)
    assert b"".join(delivered) == plaintext[: 2 * SEGMENT_SIZE]


def test_a_corrupted_first_segment_is_not_taken_for_a_foreign_header(
    archive: tuple[ArchiveKey, Path, Path],
) -> None:
    key = archive[0]
    header, body = _encrypt(os.urandom(SEGMENT_SIZE * 2), key.public)
    damaged = bytearray(body)
    damaged[-CIPHER_SEGMENT_SIZE - 1] ^= 0x80  # the first segment's tag
    with pytest.raises(SegmentAuthenticationError, match="segment 0 of the body") as failure:
        _decrypt(header, bytes(damaged), key)
    assert type(failure.value) is SegmentAuthenticationError


def test_a_failed_segment_leaves_no_plaintext_in_the_readers_buffer(
    archive: tuple[ArchiveKey, Path, Path],
) -> None:
    key = archive[0]
    header, body = _encrypt(os.urandom(SEGMENT_SIZE), key.public)
    damaged = bytearray(body)
    damaged[-1] ^= 0x01
    buffer = bytearray(SEGMENT_SIZE)
    with pytest.raises(SegmentAuthenticationError):
        BodyDecryptor(header, io.BytesIO(bytes(damaged)), key).readinto(buffer)
    assert buffer == bytes(SEGMENT_SIZE)


def test_a_replayed_header_fails_on_the_first_segment(archive: tuple[ArchiveKey, Path, Path]) -> None:
    key = archive[0]
    header_of_another_file, _ = _encrypt(os.urandom(SEGMENT_SIZE * 3), key.public)
    _, body = _encrypt(os.urandom(SEGMENT_SIZE * 3), key.public)
    reader = BodyDecryptor(header_of_another_file, io.BytesIO(body), key)
    with pytest.raises(ForeignHeader, match="belongs to another file") as failure:
        reader.read(10)
    assert failure.value.segment == 0


@pytest.mark.parametrize(
    "cut",
    [1, 100, CIPHER_SEGMENT_SIZE - 20, CIPHER_SEGMENT_SIZE, 2 * CIPHER_SEGMENT_SIZE],
    ids=["last-byte", "inside-last-segment", "leaves-a-stub", "a-whole-segment", "two-segments"],
)
def test_a_truncated_body_is_detected(archive: tuple[ArchiveKey, Path, Path], cut: int) -> None:
    key = archive[0]
    plaintext = os.urandom(SEGMENT_SIZE * 3 + 100)
    header, body = _encrypt(plaintext, key.public)
    with pytest.raises(TruncatedBody):
        _decrypt(header, body[:-cut], key, len(plaintext))


def test_without_a_recorded_size_a_cut_inside_a_segment_still_fails(
    archive: tuple[ArchiveKey, Path, Path],
) -> None:
    key = archive[0]
    header, body = _encrypt(os.urandom(SEGMENT_SIZE + 100), key.public)
    with pytest.raises(SegmentAuthenticationError, match="segment 1 "):
        _decrypt(header, body[:-10], key)
    with pytest.raises(TruncatedBody, match="segment 1 is cut short"):
        _decrypt(header, body[: -(100 + 10)], key)


def test_a_body_longer_than_recorded_is_refused(archive: tuple[ArchiveKey, Path, Path]) -> None:
    key = archive[0]
    plaintext = os.urandom(SEGMENT_SIZE * 2)
    header, body = _encrypt(plaintext, key.public)
    _, more = _encrypt(os.urandom(10), key.public)
    with pytest.raises(OverlongBody):
        _decrypt(header, body + more, key, len(plaintext))
    with pytest.raises(OverlongBody):
        _decrypt(header, body, key, len(plaintext) - 1)


def test_a_header_for_another_key_does_not_open(
    archive: tuple[ArchiveKey, Path, Path], other: tuple[ArchiveKey, Path, Path]
) -> None:
    header, body = _encrypt(b"data", other[0].public)
    with pytest.raises(HeaderKeyMismatch, match=archive[0].fingerprint):
        BodyDecryptor(header, io.BytesIO(body), archive[0])


@pytest.mark.parametrize(
    "header",
    [b"", b"crypt4gh", b"notcrypt" + bytes(8), b"crypt4gh\x02\x00\x00\x00\x01\x00\x00\x00"],
    ids=["empty", "short", "bad-magic", "version-2"],
)
def test_a_header_that_is_not_crypt4gh_is_malformed(
    archive: tuple[ArchiveKey, Path, Path], header: bytes
) -> None:
    with pytest.raises(MalformedHeader):
        open_header(header, archive[0])


def test_a_header_with_bytes_after_its_packets_is_malformed(archive: tuple[ArchiveKey, Path, Path]) -> None:
    header, _ = _encrypt(b"x", archive[0].public)
    with pytest.raises(MalformedHeader, match="follow"):
        open_header(header + b"\x00", archive[0])


def test_reencrypting_a_header_moves_the_file_to_the_new_key(
    archive: tuple[ArchiveKey, Path, Path], other: tuple[ArchiveKey, Path, Path]
) -> None:
    old, new = archive[0], other[0]
    plaintext = os.urandom(SEGMENT_SIZE * 2 + 5)
    header, body = _encrypt(plaintext, old.public)
    body_before = bytes(body)
    rotated = reencrypt_header(header, old, new.public)
    assert body == body_before
    assert rotated != header
    assert _decrypt(rotated, body, new, len(plaintext)) == plaintext
    with pytest.raises(HeaderKeyMismatch):
        open_header(rotated, old)
    with pytest.raises(HeaderKeyMismatch):
        reencrypt_header(rotated, old, old.public)
    assert _decrypt(header, body, old, len(plaintext)) == plaintext  # the old row is untouched


def test_a_reencrypted_file_decrypts_with_the_command_line(
    archive: tuple[ArchiveKey, Path, Path], other: tuple[ArchiveKey, Path, Path]
) -> None:
    plaintext = os.urandom(SEGMENT_SIZE + 3)
    header, body = _encrypt(plaintext, archive[0].public)
    working_copy = reencrypt_header(header, archive[0], other[0].public) + body
    assert _crypt4gh("crypt4gh", "decrypt", "--sk", str(other[1]), stdin=working_copy) == plaintext


# ---- the archive key -------------------------------------------------------------------------


def test_a_missing_key_names_its_setting(tmp_path: Path, archive: tuple[ArchiveKey, Path, Path]) -> None:
    with pytest.raises(ArchiveKeyError, match="GENOMHUB_ARCHIVE_SECRET_KEY"):
        load_archive_key(tmp_path / "absent.sec", archive[2], PASSPHRASE)
    with pytest.raises(ArchiveKeyError, match="GENOMHUB_ARCHIVE_PUBLIC_KEY"):
        load_archive_key(archive[1], tmp_path / "absent.pub", PASSPHRASE)


def test_a_wrong_or_missing_passphrase_is_said_so(archive: tuple[ArchiveKey, Path, Path]) -> None:
    _, secret, public = archive
    with pytest.raises(ArchiveKeyError, match="passphrase does not unlock"):
        load_archive_key(secret, public, "wrong")
    with pytest.raises(ArchiveKeyError, match="none is set"):
        load_archive_key(secret, public, "")


def test_a_key_not_in_crypt4gh_format_is_refused(
    tmp_path: Path, archive: tuple[ArchiveKey, Path, Path]
) -> None:
    ssh_key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", PASSPHRASE, "-f", str(ssh_key)], check=True)
    with pytest.raises(ArchiveKeyError, match="not a Crypt4GH private key"):
        load_archive_key(ssh_key, archive[2], PASSPHRASE)
    with pytest.raises(ArchiveKeyError, match="not a Crypt4GH public key"):
        read_public_key(Path(f"{ssh_key}.pub"))
    text = tmp_path / "notes.txt"
    text.write_text("not a key at all\n")
    with pytest.raises(ArchiveKeyError, match="not a Crypt4GH private key"):
        load_archive_key(text, archive[2], PASSPHRASE)
    with pytest.raises(ArchiveKeyError, match="not a Crypt4GH public key"):
        read_public_key(archive[1])  # the private key given as the public one
    short = tmp_path / "short.pub"
    short.write_text(
        "-----BEGIN CRYPT4GH PUBLIC KEY-----\nAAECAwQFBgcICQoLDA0ODw==\n-----END CRYPT4GH PUBLIC KEY-----\n"
    )
    with pytest.raises(ArchiveKeyError, match="holds 16 bytes"):
        read_public_key(short)


def test_an_unlocked_key_is_refused(tmp_path: Path) -> None:
    secret, public = tmp_path / "open.sec", tmp_path / "open.pub"
    _crypt4gh("crypt4gh-keygen", "--nocrypt", "--sk", str(secret), "--pk", str(public))
    with pytest.raises(ArchiveKeyError, match="not locked with a passphrase"):
        load_archive_key(secret, public, PASSPHRASE)


def test_halves_of_different_pairs_are_refused(
    archive: tuple[ArchiveKey, Path, Path], other: tuple[ArchiveKey, Path, Path]
) -> None:
    with pytest.raises(ArchiveKeyError, match="different key pairs"):
        load_archive_key(archive[1], other[2], PASSPHRASE)


def test_the_start_up_check_reads_the_settings(
    archive: tuple[ArchiveKey, Path, Path], tmp_path: Path
) -> None:
    key, secret, public = archive
    settings = ArchiveKeySettings(
        state=StateSettings(home=tmp_path),
        secret_key=secret,
        public_key=public,
        key_passphrase=PASSPHRASE,
    )
    assert check_archive_key(settings) == key
    assert "secret" not in repr(key) and key.secret.hex() not in repr(key)
    with pytest.raises(ArchiveKeyError, match=str(tmp_path / "keys" / "archive.sec")):
        check_archive_key(ArchiveKeySettings(state=StateSettings(home=tmp_path), key_passphrase=PASSPHRASE))


@pytest.fixture
def key_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    monkeypatch.setenv("GENOMHUB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GENOMHUB_ARCHIVE_KEY_PASSPHRASE", PASSPHRASE)
    yield tmp_path


def test_keys_generate_writes_a_pair_the_command_line_uses(key_env: Path) -> None:
    out = key_env / "home" / "keys"
    runner = CliRunner()
    made = runner.invoke(main, ["keys", "generate", "--out", str(out)])
    assert made.exit_code == 0, made.output
    assert f"GENOMHUB_ARCHIVE_SECRET_KEY={out / 'archive.sec'}" in made.output
    assert (out / "archive.sec").stat().st_mode & 0o077 == 0
    checked = runner.invoke(main, ["keys", "check"])
    assert checked.exit_code == 0, checked.output
    plaintext = os.urandom(70_000)
    encrypted = _crypt4gh("crypt4gh", "encrypt", "--recipient_pk", str(out / "archive.pub"), stdin=plaintext)
    assert _crypt4gh("crypt4gh", "decrypt", "--sk", str(out / "archive.sec"), stdin=encrypted) == plaintext
    again = runner.invoke(main, ["keys", "generate", "--out", str(out)])
    assert again.exit_code == 1 and "refusing to overwrite" in again.output


def test_keys_check_says_why_a_key_cannot_be_used(key_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    missing = runner.invoke(main, ["keys", "check"])
    assert missing.exit_code == 1 and "does not exist" in missing.output
    assert runner.invoke(main, ["keys", "generate", "--out", str(key_env / "home" / "keys")]).exit_code == 0
    monkeypatch.setenv("GENOMHUB_ARCHIVE_KEY_PASSPHRASE", "not it")
    wrong = runner.invoke(main, ["keys", "check"])
    assert wrong.exit_code == 1 and "passphrase does not unlock" in wrong.output
    assert "not it" not in wrong.output


def test_keys_generate_needs_a_passphrase(key_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GENOMHUB_ARCHIVE_KEY_PASSPHRASE")
    result = CliRunner().invoke(main, ["keys", "generate", "--out", str(key_env / "k")])
    assert result.exit_code == 1 and "GENOMHUB_ARCHIVE_KEY_PASSPHRASE" in result.output
    assert not (key_env / "k" / "archive.sec").exists()


def test_no_key_reaches_a_log_even_at_debug(
    archive: tuple[ArchiveKey, Path, Path],
    other: tuple[ArchiveKey, Path, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    key = archive[0]
    header, body = _encrypt(os.urandom(SEGMENT_SIZE + 1), key.public)
    data_key = open_header(header, key)
    _decrypt(reencrypt_header(header, key, key.public), body, key)
    with pytest.raises(HeaderKeyMismatch):
        open_header(header, other[0])
    logged = caplog.text.lower()
    for secret in (key.secret, other[0].secret, data_key):
        assert secret.hex() not in logged


def test_a_recipient_key_of_the_wrong_size_is_refused(archive: tuple[ArchiveKey, Path, Path]) -> None:
    key = archive[0]
    with pytest.raises(ValueError, match="32 bytes, got 31"):
        BodyEncryptor(key.public[:31])
    header, _ = _encrypt(b"x", key.public)
    with pytest.raises(ValueError, match="32 bytes, got 33"):
        reencrypt_header(header, key, key.public + b"\x00")


@pytest.mark.parametrize(
    "offset", [0, 1, SEGMENT_SIZE - 1, SEGMENT_SIZE, SEGMENT_SIZE + 7, 3 * SEGMENT_SIZE, 250_000]
)
def test_a_seek_reads_on_from_any_plaintext_offset(
    archive: tuple[ArchiveKey, Path, Path], offset: int
) -> None:
    key = archive[0]
    plaintext = os.urandom(250_000)
    header, body = _encrypt(plaintext, key.public)
    reader = BodyDecryptor(header, io.BytesIO(body), key, len(plaintext))
    assert reader.seekable()
    assert reader.seek(offset) == offset
    assert reader.tell() == offset
    assert io.BufferedReader(reader).read() == plaintext[offset:]
    assert reader.seek(-10, io.SEEK_END) == len(plaintext) - 10
    assert reader.read(100) == plaintext[-10:]


def test_a_seek_into_a_corrupted_segment_fails_at_once(archive: tuple[ArchiveKey, Path, Path]) -> None:
    key = archive[0]
    header, body = _encrypt(os.urandom(3 * SEGMENT_SIZE), key.public)
    damaged = bytearray(body)
    damaged[CIPHER_SEGMENT_SIZE + 100] ^= 1
    reader = BodyDecryptor(header, io.BytesIO(bytes(damaged)), key, 3 * SEGMENT_SIZE)
    with pytest.raises(SegmentAuthenticationError, match="segment 1"):
        reader.seek(SEGMENT_SIZE + 5)


def test_without_a_recorded_size_a_body_does_not_seek(archive: tuple[ArchiveKey, Path, Path]) -> None:
    key = archive[0]
    header, body = _encrypt(b"x" * 100, key.public)
    reader = BodyDecryptor(header, io.BytesIO(body), key)
    assert not reader.seekable()
    with pytest.raises(io.UnsupportedOperation):
        reader.seek(5)
