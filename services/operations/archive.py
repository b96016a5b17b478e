"""``genomhub archive``: the archive key's life and the encrypted archive's own checks.

Four operations on the archive as it rests (design.md section 13):

- ``rotate-key`` re-encrypts every header in the header store from the retiring key to the
  current one. It reads headers only: a body may be on tape, and rotating a key must not
  recall it. Each header is replaced whole (``HeaderStore.write``), so a rotation stopped
  anywhere leaves every header opening with one key or the other, and run again it skips
  the headers already rotated.
- ``encrypt-plaintext`` migrates an archive from before encryption: each plaintext body is
  encrypted under a temporary name in the same pass that hashes it against the sha256 the
  receiver recorded, the new body is read back and checked, its header stored, and only
  then is the plaintext replaced. A crash at any step leaves a state the next run finishes.
- ``export`` writes one archived file as a single Crypt4GH file (header then body) that the
  ``crypt4gh`` command line decrypts, without decrypting anything itself.
- ``check`` reads every archived file through ``open_archived`` and says, per file, whether
  it is whole or exactly why not.

The files and their recorded sizes and digests are the receiver's (its database is where
the archive records what it holds).
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import BinaryIO

import click

from shared.config import ArchiveSettings, ReceiverSettings, TierSettings
from shared.encryption import (
    ArchiveKey,
    ArchiveKeyError,
    BodyDecryptor,
    BodyEncryptor,
    EncryptionError,
    ForeignHeader,
    HeaderKeyMismatch,
    MalformedHeader,
    OverlongBody,
    SegmentAuthenticationError,
    TruncatedBody,
    check_archive_key,
    open_header,
    read_public_key,
    reencrypt_header,
)
from shared.headers import HeaderStore, MissingHeader
from shared.storage import StoredObject, filesystem, open_archived, use_s3_endpoint
from shared.tiers import ArchiveTiers, NeedsRecall

CHUNK = 1 << 20
"""Bytes read at a time from a body: memory stays flat whatever the file's size."""
ENCRYPTING_SUFFIX = ".c4gh-encrypting"
"""The name a body's encrypted form has until it replaces the plaintext."""


@dataclass(frozen=True)
class Outcome:
    """What an archive operation did with one file: ``status`` a word, ``reason`` why."""

    url: str
    status: str
    reason: str = ""

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "refused")

    def line(self) -> str:
        return f"{self.status:10} {self.url}" + (f": {self.reason}" if self.reason else "")


# --------------------------------------------------------------------------------------------
# Rotation
# --------------------------------------------------------------------------------------------


def rotate_headers(headers: HeaderStore, key: ArchiveKey) -> Iterator[Outcome]:
    """Each header moved from ``key.previous`` to ``key`` (``rotated``), or found already there
    (``current``), or one neither key opens (``failed``, left as it is). No body is opened."""
    for url in headers.bodies():
        header = headers.read(url)
        try:
            open_header(header, key.current)
            yield Outcome(url, "current")
            continue
        except HeaderKeyMismatch:
            pass
        except MalformedHeader as exc:
            yield Outcome(url, "failed", str(exc))
            continue
        try:
            rotated = reencrypt_header(header, key, key.public)
        except EncryptionError as exc:
            yield Outcome(url, "failed", str(exc))
            continue
        headers.write(url, rotated)
        yield Outcome(url, "rotated")


# --------------------------------------------------------------------------------------------
# Checking
# --------------------------------------------------------------------------------------------


REASONS: tuple[tuple[type[Exception], str], ...] = (
    (MissingHeader, "missing header: the body has none in the header store"),
    (HeaderKeyMismatch, "header for another key: {0}"),
    (ForeignHeader, "header belongs to another body (replayed): {0}"),
    (SegmentAuthenticationError, "corrupted segment {0.segment}: {0}"),
    (TruncatedBody, "truncated: {0}"),
    (OverlongBody, "overlong: {0}"),
    (MalformedHeader, "malformed header: {0}"),
    (FileNotFoundError, "missing body: nothing at this URL"),
    (EncryptionError, "{0}"),
)
"""What ``check`` says of each way a file fails to read, the most specific first (a replayed
header is a failed segment too)."""


def check_file(
    stored: StoredObject, headers: HeaderStore, key: ArchiveKey, tiers: ArchiveTiers | None = None
) -> Outcome:
    """``ok`` when the file's every segment authenticates, its length is the recorded one and
    its plaintext hashes to the recorded sha256; else ``failed`` with the specific reason.
    With ``tiers`` the body is read on whichever tier holds it now (see :func:`_checked`)."""
    return _checked(stored.url, stored.size, stored.sha256, headers, key, tiers)


def check_unrecorded(
    body_url: str, headers: HeaderStore, key: ArchiveKey, tiers: ArchiveTiers | None = None
) -> Outcome:
    """A body with a header that the receiver did not record (a harmoniser's output): every
    segment authenticated, but no size or digest to hold it to, which the outcome says."""
    outcome = _checked(body_url, None, None, headers, key, tiers)
    if outcome.status != "ok":
        return outcome
    said = "segments authentic; the receiver recorded no size or sha256 for it"
    return Outcome(body_url, "ok", f"{said} ({outcome.reason})" if outcome.reason else said)


def _checked(
    url: str,
    size: int | None,
    sha256: str | None,
    headers: HeaderStore,
    key: ArchiveKey,
    tiers: ArchiveTiers | None,
) -> Outcome:
    """Read the body as the services do. A body the lifecycle moved is read where it is now,
    and the outcome names that tier; one on tape and not staged is ``on-tape``, not read and
    not failed: a check never waits for tape, nor recalls it (a recall is a person's decision,
    and its cost is a drive's hours), and tape is not where a body is missing from."""
    digest = hashlib.sha256()
    where = ""
    try:
        if tiers is not None:
            located = tiers.locate(url)
            where = "" if located == url else f"read on the {_tier_of(tiers, located)} tier"
        with open_archived(url, size, headers, key, tiers) as plaintext:
            for segment in plaintext.segments():
                digest.update(segment)
    except NeedsRecall as needs:
        state = "being recalled" if needs.state == "recalling" else "on tape and not staged"
        return Outcome(url, "on-tape", f"not read: {state} (a recall stages it to be checked)")
    except (MissingHeader, EncryptionError, FileNotFoundError) as exc:
        reason = next(said for kind, said in REASONS if isinstance(exc, kind))
        return Outcome(url, "failed", reason.format(exc) + (f" ({where})" if where else ""))
    if sha256 is not None and digest.hexdigest() != sha256:
        reason = f"plaintext sha256 {digest.hexdigest()} is not the recorded {sha256}"
        return Outcome(url, "failed", reason + (f" ({where})" if where else ""))
    return Outcome(url, "ok", where)


def _tier_of(tiers: ArchiveTiers, located: str) -> str:
    return next(
        name for name in ("warm", "cold", "hot") if located.startswith(getattr(tiers, name).rstrip("/") + "/")
    )


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


def export_file(body_url: str, headers: HeaderStore, out: BinaryIO, header: bytes | None = None) -> int:
    """Writes the archived file as one Crypt4GH file, its stored header (or ``header``, one
    re-encrypted for a recipient) then its body's bytes as they are; returns bytes written."""
    written = out.write(headers.read(body_url) if header is None else header)
    fs, path = filesystem(body_url)
    with fs.open(path, "rb") as body:
        while chunk := body.read(CHUNK):
            written += out.write(chunk)
    return written


# --------------------------------------------------------------------------------------------
# Migration of a plaintext archive
# --------------------------------------------------------------------------------------------


class DigestMismatch(Exception):
    """A plaintext body does not hash to the sha256 the archive recorded for it."""


def encrypt_plaintext(
    stored: StoredObject,
    headers: HeaderStore,
    key: ArchiveKey,
    replace: Callable[[str, str], None] | None = None,
) -> Outcome:
    """Migrates one file, resuming from whatever a stopped run left.

    The steps, each leaving a state the next run recognises: (1) the plaintext streams once
    through sha256 and the encryptor into ``<body>.c4gh-encrypting``; (2) its digest is held
    to the recorded one (a mismatch removes the temporary body and leaves the plaintext
    alone); (3) the temporary body is decrypted back and hashed; (4) the header is stored;
    (5) the temporary body replaces the plaintext. A header with a temporary body beside it
    means step 5 had not happened: the temporary body is checked again and put in place.
    ``replace`` moves a temporary body over the plaintext (the filesystem's own move).
    """
    fs, path = filesystem(stored.url)
    temporary = path + ENCRYPTING_SUFFIX
    move = replace or (lambda source, target: fs.mv(source, target))
    if headers.exists(stored.url):
        if not fs.exists(temporary):
            return Outcome(stored.url, "encrypted", "already (it has a header)")
        try:
            _verify_body(fs.open(temporary, "rb"), headers.read(stored.url), key, stored)
        except (EncryptionError, DigestMismatch) as exc:
            return Outcome(
                stored.url, "failed", f"the stored header's body {temporary} does not check: {exc}"
            )
        move(temporary, path)
        return Outcome(stored.url, "encrypted", "resumed: its checked body replaced the plaintext")
    if fs.exists(temporary):
        fs.rm(temporary)  # an earlier run stopped before storing the header: start again
    encryptor = BodyEncryptor(key.public)
    digest = hashlib.sha256()
    with fs.open(path, "rb") as plaintext, fs.open(temporary, "wb") as body:
        while chunk := plaintext.read(CHUNK):
            digest.update(chunk)
            for segment in encryptor.feed(chunk):
                body.write(segment)
        for segment in encryptor.finish():
            body.write(segment)
    if digest.hexdigest() != stored.sha256 or encryptor.plaintext_size != stored.size:
        fs.rm(temporary)
        return Outcome(
            stored.url,
            "refused",
            f"the plaintext ({encryptor.plaintext_size} bytes, sha256 {digest.hexdigest()}) is not what "
            f"the archive recorded ({stored.size} bytes, sha256 {stored.sha256}); left as it is",
        )
    try:
        _verify_body(fs.open(temporary, "rb"), encryptor.header, key, stored)
    except (EncryptionError, DigestMismatch) as exc:
        fs.rm(temporary)
        return Outcome(stored.url, "failed", f"the encrypted body did not read back: {exc}")
    headers.write(stored.url, encryptor.header)
    move(temporary, path)
    return Outcome(stored.url, "encrypted", f"{stored.size} bytes, sha256 checked")


def _verify_body(body: BinaryIO, header: bytes, key: ArchiveKey, stored: StoredObject) -> None:
    digest = hashlib.sha256()
    with BodyDecryptor(header, body, key, stored.size, close_body=True) as plaintext:
        for segment in plaintext.segments():
            digest.update(segment)
    if digest.hexdigest() != stored.sha256:
        raise DigestMismatch(f"it decrypts to sha256 {digest.hexdigest()}, not the recorded {stored.sha256}")


# --------------------------------------------------------------------------------------------
# The commands
# --------------------------------------------------------------------------------------------


def _archive() -> tuple[ArchiveSettings, HeaderStore]:
    settings = ArchiveSettings()
    use_s3_endpoint(settings.s3_endpoint_url)
    return settings, HeaderStore.of(settings)


def _key(settings: ArchiveSettings) -> ArchiveKey:
    try:
        return check_archive_key(settings.key)
    except ArchiveKeyError as exc:
        raise click.ClickException(str(exc)) from exc


def _archived_files() -> list[StoredObject]:
    from services.receiver.state import SubmissionStore

    store = SubmissionStore(ReceiverSettings().database_url)
    try:
        return store.archived_files()
    finally:
        store.dispose()


def _report(
    outcomes: Iterator[Outcome] | list[Outcome], quiet_statuses: tuple[str, ...] = ()
) -> dict[str, int]:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
        if outcome.status not in quiet_statuses:
            click.echo(outcome.line())
    click.echo(", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no files")
    return counts


@click.command("rotate-key")
def rotate_key() -> None:
    """Re-encrypt every header from GENOMHUB_ARCHIVE_PREVIOUS_SECRET_KEY to the current key.

    Rewrites headers only, never a body; run again after an interruption, it skips the
    headers already rotated. Exits 1 if any header opens with neither key.
    """
    settings, headers = _archive()
    key = _key(settings)
    if key.previous is None:
        raise click.ClickException(
            "nothing to rotate from: set GENOMHUB_ARCHIVE_PREVIOUS_SECRET_KEY to the retiring key's "
            "private key file (and GENOMHUB_ARCHIVE_SECRET_KEY / _PUBLIC_KEY to the new pair)"
        )
    counts = _report(rotate_headers(headers, key), quiet_statuses=("current", "rotated"))
    if counts.get("failed"):
        raise SystemExit(1)


@click.command("encrypt-plaintext")
def encrypt_plaintext_command() -> None:
    """Encrypt a plaintext archive in place, file by file, each digest checked first.

    Resumable: a file with a header is skipped, one stopped half way is finished. A file
    whose plaintext does not match the receiver's recorded sha256 is left alone and reported
    (exit 1).
    """
    settings, headers = _archive()
    key = _key(settings)
    counts = _report(encrypt_plaintext(stored, headers, key) for stored in _archived_files())
    if counts.get("failed") or counts.get("refused"):
        raise SystemExit(1)


@click.command("check")
def check() -> None:
    """Read every archived file through its header as the services do; say per file whether
    it is whole or why not (exit 1 if any is not). Files the receiver recorded are held to
    their size and sha256; other bodies with a header (harmoniser outputs) to their tags. A
    body moved down the tiers is read where it is now; one on tape and not staged is listed
    ``on-tape``, unread (a check recalls nothing)."""
    settings, headers = _archive()
    key = _key(settings)
    tiers = ArchiveTiers.of(TierSettings())
    recorded = _archived_files()
    known = {stored.url for stored in recorded}
    counts = _report(
        chain(
            (check_file(stored, headers, key, tiers) for stored in recorded),
            (check_unrecorded(url, headers, key, tiers) for url in headers.bodies() if url not in known),
        )
    )
    if counts.get("failed"):
        raise SystemExit(1)


@click.command("export")
@click.argument("body_url")
@click.option("--out", "out_url", required=True, help="Path or fsspec URL of the Crypt4GH file to write.")
@click.option(
    "--recipient-pk",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="A recipient's Crypt4GH public key: the header is re-encrypted for it (the body unchanged). "
    "Unset: the archive's own header.",
)
def export(body_url: str, out_url: str, recipient_pk: str | None) -> None:
    """Write the archived file at BODY_URL, header then body, as one Crypt4GH file."""
    settings, headers = _archive()
    header = None
    try:
        if recipient_pk is not None:
            header = reencrypt_header(
                headers.read(body_url), _key(settings), read_public_key(Path(recipient_pk))
            )
        fs, path = filesystem(out_url)
        parent = posixpath.dirname(path)
        if parent:
            fs.makedirs(parent, exist_ok=True)
        with fs.open(path, "wb") as out:
            written = export_file(body_url, headers, out, header)
    except (MissingHeader, EncryptionError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{out_url}: {written} bytes of Crypt4GH")
