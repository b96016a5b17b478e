"""``genomhub archive``: key rotation, the plaintext migration, export and the archive's check,
on a real archive folder, header store and receiver database (SQLite), with keys in
Crypt4GH's format and the ``crypt4gh`` command line itself for the export."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import insert

from services.cli import main
from services.operations.archive import ENCRYPTING_SUFFIX, check_file, encrypt_plaintext
from services.receiver.state import SubmissionStore, files, submissions
from shared.encryption import (
    SEGMENT_SIZE,
    ArchiveKey,
    BodyDecryptor,
    BodyEncryptor,
    HeaderKeyMismatch,
    encrypt_chunks,
    load_archive_key,
    open_header,
    write_key_pair,
)
from shared.headers import HeaderStore
from shared.storage import StoredObject
from shared.tiers import FolderColdTier

PASSPHRASE = "the archive operations' passphrase"
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Pair:
    secret: Path
    public: Path
    key: ArchiveKey


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Pair]:
    made = {}
    for name in ("old", "new", "stranger"):
        secret, public = write_key_pair(tmp_path_factory.mktemp(f"{name}-key"), PASSPHRASE)
        made[name] = Pair(secret, public, load_archive_key(secret, public, PASSPHRASE))
    return made


@dataclass
class Archive:
    root: Path
    headers: HeaderStore
    receiver: SubmissionStore
    monkeypatch: pytest.MonkeyPatch

    @property
    def store(self) -> Path:
        return self.root / "store"

    def use_key(self, current: Pair, previous: Pair | None = None) -> None:
        self.monkeypatch.setenv("GENOMHUB_ARCHIVE_SECRET_KEY", str(current.secret))
        self.monkeypatch.setenv("GENOMHUB_ARCHIVE_PUBLIC_KEY", str(current.public))
        if previous is None:
            self.monkeypatch.delenv("GENOMHUB_ARCHIVE_PREVIOUS_SECRET_KEY", raising=False)
        else:
            self.monkeypatch.setenv("GENOMHUB_ARCHIVE_PREVIOUS_SECRET_KEY", str(previous.secret))

    def record(self, name: str, plaintext: bytes, sha256: str | None = None) -> StoredObject:
        """The receiver's row of an archived file (its plaintext size and digest)."""
        url = (self.store / name).as_uri()
        digest = sha256 or hashlib.sha256(plaintext).hexdigest()
        now = datetime.now(UTC)
        with self.receiver.writing() as conn:
            conn.execute(
                insert(submissions).values(
                    submission_id=f"sub-{name}",
                    region="hovedstaden",
                    department="KG",
                    sample_id=f"S-{name}",
                    patient_id="P1",
                    analysis_type="WGS",
                    platform="illumina",
                    created_at=now,
                    created_by="hovedstaden",
                )
            )
            conn.execute(
                insert(files).values(
                    submission_id=f"sub-{name}",
                    name=name,
                    role="reads",
                    url=url,
                    size=len(plaintext),
                    sha256=digest,
                    md5=hashlib.md5(plaintext).hexdigest(),
                    completed_at=now,
                )
            )
        return StoredObject(url, len(plaintext), digest, hashlib.md5(plaintext).hexdigest())

    def encrypted(self, name: str, plaintext: bytes, key: ArchiveKey) -> StoredObject:
        """An archived file as intake stores it: a body, and its header in the header store."""
        stored = self.record(name, plaintext)
        encryptor = BodyEncryptor(key.public)
        self.body(name).write_bytes(b"".join(encrypt_chunks(encryptor, [plaintext])))
        self.headers.write(stored.url, encryptor.header)
        return stored

    def plaintext(self, name: str, plaintext: bytes, sha256: str | None = None) -> StoredObject:
        """An archived file from before encryption: the plaintext, and no header."""
        self.body(name).write_bytes(plaintext)
        return self.record(name, plaintext, sha256)

    def body(self, name: str) -> Path:
        return self.store / name

    def reads(self, stored: StoredObject, key: ArchiveKey) -> bytes:
        with BodyDecryptor(
            self.headers.read(stored.url),
            open(self.body(Path(stored.url).name), "rb"),
            key,
            stored.size,
            close_body=True,
        ) as plaintext:
            return b"".join(plaintext.segments())


@pytest.fixture
def archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Archive]:
    (tmp_path / "store").mkdir()
    database = f"sqlite:///{tmp_path / 'receiver.db'}"
    for variable, value in {
        "GENOMHUB_HOME": str(tmp_path / "home"),
        "GENOMHUB_STORE": (tmp_path / "store").as_uri(),
        "GENOMHUB_HEADER_STORE": (tmp_path / "headers").as_uri(),
        "GENOMHUB_RECEIVER_DATABASE_URL": database,
        "GENOMHUB_ARCHIVE_KEY_PASSPHRASE": PASSPHRASE,
    }.items():
        monkeypatch.setenv(variable, value)
    receiver = SubmissionStore(database)
    yield Archive(
        tmp_path,
        HeaderStore((tmp_path / "store").as_uri(), (tmp_path / "headers").as_uri()),
        receiver,
        monkeypatch,
    )
    receiver.dispose()


def genomhub(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def data(size: int) -> bytes:
    return os.urandom(size)


# ---- rotate-key -------------------------------------------------------------------------------


def _bodies(archive: Archive) -> dict[str, tuple[int, int, bytes]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in archive.store.iterdir()}


def test_rotation_rewrites_headers_only_and_resumes_after_an_interruption(
    archive: Archive, pairs: dict[str, Pair], monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = pairs["old"], pairs["new"]
    plaintexts = {f"f{i}.cram": data(SEGMENT_SIZE * i + 7) for i in range(4)}
    stored = {name: archive.encrypted(name, text, old.key) for name, text in plaintexts.items()}
    before = _bodies(archive)
    archive.use_key(new, previous=old)

    written: list[str] = []
    real_write = HeaderStore.write

    def write_then_stop(self: HeaderStore, body_url: str, header: bytes) -> None:
        if len(written) == 2:
            raise OSError("the process killed mid-rotation")
        written.append(body_url)
        real_write(self, body_url, header)

    away = archive.root / "store-on-tape"
    archive.store.rename(away)  # no body can be read while the headers rotate
    with monkeypatch.context() as patch:
        patch.setattr(HeaderStore, "write", write_then_stop)
        with pytest.raises(OSError, match="killed mid-rotation"):
            genomhub("archive", "rotate-key")
    away.rename(archive.store)
    window = load_archive_key(new.secret, new.public, PASSPHRASE)
    window = ArchiveKey(window.public, window.secret, old.key)
    opens_new = 0
    for name, file in stored.items():
        assert archive.reads(file, window) == plaintexts[name]  # every header whole: old or new
        try:
            open_header(archive.headers.read(file.url), new.key)
            opens_new += 1
        except HeaderKeyMismatch:
            open_header(archive.headers.read(file.url), old.key)
    assert opens_new == 2

    archive.store.rename(away)
    resumed = genomhub("archive", "rotate-key")
    away.rename(archive.store)
    assert resumed.exit_code == 0, resumed.output
    assert resumed.output.strip().splitlines()[-1] == "2 current, 2 rotated"
    for name, file in stored.items():
        assert archive.reads(file, new.key) == plaintexts[name]
        with pytest.raises(HeaderKeyMismatch):
            open_header(archive.headers.read(file.url), old.key)  # the retired key opens nothing
    assert _bodies(archive) == before  # same inodes, mtimes and bytes: no body rewritten

    archive.use_key(new)  # the old key retired
    checked = genomhub("archive", "check")
    assert checked.exit_code == 0 and checked.output.strip().splitlines()[-1] == "4 ok", checked.output


def test_rotation_needs_the_retiring_key_and_reports_a_header_neither_opens(
    archive: Archive, pairs: dict[str, Pair]
) -> None:
    archive.encrypted("ours.fastq.gz", data(1000), pairs["old"].key)
    archive.encrypted("stray.fastq.gz", data(1000), pairs["stranger"].key)
    archive.use_key(pairs["new"])
    alone = genomhub("archive", "rotate-key")
    assert alone.exit_code == 1 and "set GENOMHUB_ARCHIVE_PREVIOUS_SECRET_KEY" in alone.output
    archive.use_key(pairs["new"], previous=pairs["old"])
    result = genomhub("archive", "rotate-key")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("failed") and "stray.fastq.gz: the header does not open with" in lines[0]
    assert lines[-1] == "1 failed, 1 rotated"


# ---- check ------------------------------------------------------------------------------------


def test_check_names_what_is_wrong_with_each_file(archive: Archive, pairs: dict[str, Pair]) -> None:
    key = pairs["old"].key
    size = 3 * SEGMENT_SIZE + 100
    archive.encrypted("whole.cram", data(size), key)
    archive.encrypted("corrupted.cram", data(size), key)
    body = bytearray(archive.body("corrupted.cram").read_bytes())
    body[SEGMENT_SIZE + 28 + 500] ^= 1  # a byte of segment 1
    archive.body("corrupted.cram").write_bytes(body)
    archive.encrypted("truncated.cram", data(size), key)
    with open(archive.body("truncated.cram"), "r+b") as handle:
        handle.truncate(2 * (SEGMENT_SIZE + 28))
    archive.encrypted("for-another-key.cram", data(size), pairs["stranger"].key)
    replayed = archive.encrypted("replayed.cram", data(size), key)
    archive.headers.write(replayed.url, archive.headers.read((archive.store / "whole.cram").as_uri()))
    missing = archive.encrypted("missing-header.cram", data(size), key)
    archive.headers.remove(missing.url)
    archive.record("wrong-digest.cram", b"x")  # recorded with one plaintext ...
    other = data(1)
    encryptor = BodyEncryptor(key.public)
    archive.body("wrong-digest.cram").write_bytes(b"".join(encrypt_chunks(encryptor, [other])))
    archive.headers.write(
        (archive.store / "wrong-digest.cram").as_uri(), encryptor.header
    )  # ... holds another

    output = archive.store / "harmonised" / "S1.vcf.gz"  # a harmoniser's output: no receiver row
    output.parent.mkdir()
    encryptor = BodyEncryptor(key.public)
    output.write_bytes(b"".join(encrypt_chunks(encryptor, [data(size)])))
    archive.headers.write(output.as_uri(), encryptor.header)

    archive.use_key(pairs["old"])
    result = genomhub("archive", "check")
    assert result.exit_code == 1
    said = {
        line.split()[1].rsplit("/", 1)[1].rstrip(":"): line
        for line in result.output.strip().splitlines()[:-1]
    }
    assert said["whole.cram"].startswith("ok")
    assert "corrupted segment 1:" in said["corrupted.cram"]
    assert "truncated:" in said["truncated.cram"]
    assert "header for another key:" in said["for-another-key.cram"]
    assert "header belongs to another body (replayed)" in said["replayed.cram"]
    assert "missing header" in said["missing-header.cram"]
    assert "is not the recorded" in said["wrong-digest.cram"]
    assert said["S1.vcf.gz"].startswith("ok") and "recorded no size or sha256" in said["S1.vcf.gz"]
    assert result.output.strip().splitlines()[-1] == "6 failed, 2 ok"


def test_check_reads_a_moved_body_where_it_is_and_leaves_one_on_tape_unread(
    archive: Archive, pairs: dict[str, Pair]
) -> None:
    """A body the lifecycle moved is checked on its tier (a corrupted one there still fails,
    named with its tier); one on tape is listed as such, not read and not failed, unless a
    recall staged it; a body on no tier at all is missing."""
    key = pairs["old"].key
    size = 2 * SEGMENT_SIZE + 7
    tiers = archive.root / "home" / "tiers"
    archive.monkeypatch.setenv("GENOMHUB_TIER_RECALL_DELAY", "0")
    for name in ("warm.cram", "warm-corrupted.cram", "cold.cram", "cold-staged.cram", "gone.cram"):
        archive.encrypted(name, data(size), key)
    archive.encrypted("hot.cram", data(size), key)
    for name, tier in (
        ("warm.cram", "warm"),
        ("warm-corrupted.cram", "warm"),
        ("cold.cram", "cold"),
        ("cold-staged.cram", "cold"),
    ):
        (tiers / tier).mkdir(parents=True, exist_ok=True)
        shutil.move(archive.body(name), tiers / tier / name)
    body = bytearray((tiers / "warm" / "warm-corrupted.cram").read_bytes())
    body[100] ^= 1
    (tiers / "warm" / "warm-corrupted.cram").write_bytes(body)
    archive.body("gone.cram").unlink()
    FolderColdTier((tiers / "cold").as_uri(), delay=0, drives=1).recall("cold-staged.cram", 3600)

    archive.use_key(pairs["old"])
    result = genomhub("archive", "check")
    said = {
        line.split()[1].rsplit("/", 1)[1].rstrip(":"): line
        for line in result.output.strip().splitlines()[:-1]
    }
    assert said["hot.cram"].split() == ["ok", (archive.store / "hot.cram").as_uri()]
    assert said["warm.cram"].startswith("ok") and said["warm.cram"].endswith("read on the warm tier")
    assert said["warm-corrupted.cram"].startswith("failed")
    assert (
        "corrupted segment 0" in said["warm-corrupted.cram"]
        and "(read on the warm tier)" in said["warm-corrupted.cram"]
    )
    assert said["cold.cram"].startswith("on-tape") and "on tape and not staged" in said["cold.cram"]
    assert said["cold-staged.cram"].startswith("ok") and said["cold-staged.cram"].endswith("cold tier")
    assert "missing body" in said["gone.cram"]
    assert result.output.strip().splitlines()[-1] == "2 failed, 3 ok, 1 on-tape"
    assert result.exit_code == 1
    assert not (tiers / "cold" / ".recalls" / "cold.cram.json").exists()  # a check recalls nothing


# ---- export -----------------------------------------------------------------------------------


def _crypt4gh_decrypt(secret: Path, encrypted: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(BIN / "crypt4gh"), "decrypt", "--sk", str(secret)],
        input=encrypted,
        capture_output=True,
        env={**os.environ, "C4GH_PASSPHRASE": PASSPHRASE},
    )


def test_an_exported_file_decrypts_with_the_crypt4gh_command_line(
    archive: Archive, pairs: dict[str, Pair]
) -> None:
    plaintext = data(2 * SEGMENT_SIZE + 3)
    stored = archive.encrypted("sample.cram", plaintext, pairs["old"].key)
    archive.use_key(pairs["old"])
    out = archive.root / "out" / "sample.cram.c4gh"
    result = genomhub("archive", "export", stored.url, "--out", str(out))
    assert result.exit_code == 0, result.output
    decrypted = _crypt4gh_decrypt(pairs["old"].secret, out.read_bytes())
    assert decrypted.returncode == 0, decrypted.stderr
    assert decrypted.stdout == plaintext

    copy = archive.root / "out" / "for-the-recipient.c4gh"
    handed = genomhub(
        "archive", "export", stored.url, "--out", str(copy), "--recipient-pk", str(pairs["stranger"].public)
    )
    assert handed.exit_code == 0, handed.output
    assert _crypt4gh_decrypt(pairs["stranger"].secret, copy.read_bytes()).stdout == plaintext
    assert _crypt4gh_decrypt(pairs["old"].secret, copy.read_bytes()).returncode != 0
    assert copy.read_bytes().endswith(archive.body("sample.cram").read_bytes())  # the body as it rests

    unknown = genomhub("archive", "export", (archive.store / "absent.cram").as_uri(), "--out", str(copy))
    assert unknown.exit_code == 1 and "has no Crypt4GH header" in unknown.output


# ---- encrypt-plaintext ------------------------------------------------------------------------


def test_a_plaintext_archive_is_encrypted_in_place_each_digest_checked(
    archive: Archive, pairs: dict[str, Pair]
) -> None:
    texts = {"a.fastq.gz": data(SEGMENT_SIZE * 2 + 1), "b.vcf.gz": data(10), "empty.txt": b""}
    for name, text in texts.items():
        archive.plaintext(name, text)
    archive.plaintext("tampered.cram", data(500), sha256="0" * 64)
    archive.use_key(pairs["old"])
    result = genomhub("archive", "encrypt-plaintext")
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1] == "3 encrypted, 1 refused"
    assert any(
        line.startswith("refused") and "tampered.cram" in line and "left as it is" in line for line in lines
    )
    tampered = archive.body("tampered.cram").read_bytes()
    assert len(tampered) == 500 and not archive.headers.exists((archive.store / "tampered.cram").as_uri())
    assert not list(archive.store.glob(f"*{ENCRYPTING_SUFFIX}"))
    for stored in archive.receiver.archived_files():
        name = stored.url.rsplit("/", 1)[1]
        if name in texts:
            assert archive.body(name).read_bytes() != texts[name] or not texts[name]
            assert archive.reads(stored, pairs["old"].key) == texts[name]
    again = genomhub("archive", "encrypt-plaintext")
    assert again.output.strip().splitlines()[-1] == "3 encrypted, 1 refused"
    assert sum("already" in line for line in again.output.splitlines()) == 3


def test_a_migration_stopped_at_any_step_resumes_correctly(
    archive: Archive, pairs: dict[str, Pair], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = pairs["old"].key
    plaintext = data(3 * SEGMENT_SIZE + 5)
    stored = archive.plaintext("sample.cram", plaintext)
    body, temporary = archive.body("sample.cram"), Path(f"{archive.body('sample.cram')}{ENCRYPTING_SUFFIX}")

    # Stopped while the encrypted body was being written: a partial temporary body, no header.
    temporary.write_bytes(b"half a body")
    # Stopped while storing the header: the plaintext is still the body, and no header.
    with monkeypatch.context() as patch:

        def crash(*_: object) -> None:
            raise OSError("the header store went away")

        patch.setattr(HeaderStore, "write", crash)
        with pytest.raises(OSError, match="header store went away"):
            encrypt_plaintext(stored, archive.headers, key)
    assert body.read_bytes() == plaintext and not archive.headers.exists(stored.url)

    # Stopped after the header was stored, before the encrypted body replaced the plaintext.
    def stop(source: str, target: str) -> None:
        raise KeyboardInterrupt("killed before the replace")

    with pytest.raises(KeyboardInterrupt):
        encrypt_plaintext(stored, archive.headers, key, replace=stop)
    assert body.read_bytes() == plaintext and archive.headers.exists(stored.url) and temporary.exists()

    resumed = encrypt_plaintext(stored, archive.headers, key)
    assert (resumed.status, resumed.reason) == (
        "encrypted",
        "resumed: its checked body replaced the plaintext",
    )
    assert not temporary.exists() and archive.reads(stored, key) == plaintext
    assert encrypt_plaintext(stored, archive.headers, key).reason == "already (it has a header)"

    # A temporary body that does not match the stored header is never put in place.
    shutil.copy(body, temporary)
    with open(temporary, "r+b") as handle:
        handle.seek(100)
        handle.write(b"\0")
    before = body.read_bytes()
    refused = encrypt_plaintext(stored, archive.headers, key)
    assert refused.status == "failed" and "does not check" in refused.reason
    assert body.read_bytes() == before and check_file(stored, archive.headers, key).status == "ok"
