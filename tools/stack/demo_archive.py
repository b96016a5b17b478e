"""The demo's look at the archive at rest: only Crypt4GH bodies, a round trip through the
``crypt4gh`` command line, and a key rotation that rewrites headers and not one body.

Run after the demo's month, on what its five submissions left in the archive, with the
commands an operator would use (``genomhub archive check|export|rotate-key``) and the
``crypt4gh`` package's own command line, so what the demo says is what those tools say.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import click

from services.receiver.state import SubmissionStore
from shared.config import ArchiveSettings, ReceiverSettings, StateSettings
from shared.encryption import load_archive_key, write_key_pair
from shared.headers import HeaderStore
from shared.storage import CHUNK, StoredObject, filesystem

CRYPT4GH = Path(sys.executable).with_name("crypt4gh")


@dataclass(frozen=True)
class BodyOnDisk:
    """What would change if a body were rewritten: its inode, modification time and bytes."""

    inode: int
    mtime_ns: int
    sha256: str


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def bodies_on_disk(store: str) -> dict[str, BodyOnDisk]:
    """Every file under the (local) archive, by path."""
    _, root = filesystem(store)
    found = {}
    for path in sorted(Path(root).rglob("*")):
        if path.is_file():
            status = path.stat()
            found[str(path)] = BodyOnDisk(status.st_ino, status.st_mtime_ns, _sha256(path))
    return found


def _recorded(home: Path) -> list[StoredObject]:
    store = SubmissionStore(ReceiverSettings(state=StateSettings(home=home)).database_url)
    try:
        return store.archived_files()
    finally:
        store.dispose()


Command = Callable[[list[str], Mapping[str, str]], str]
"""Runs ``genomhub ARGS`` in an environment and returns what it printed (the demo's own)."""


def show_archive_at_rest(
    home: Path, national: Mapping[str, str], genomhub_command: Command, say: Callable[[str], None]
) -> None:
    """Prints what the archive holds and proves it with the tools; raises if anything is off."""
    archive = ArchiveSettings(state=StateSettings(home=home))
    headers = HeaderStore.of(archive)
    before = bodies_on_disk(archive.store_url)
    with_header = {filesystem(url)[1] for url in headers.bodies()}
    bare = sorted(set(before) - with_header)
    if bare:
        raise click.ClickException(f"files in the archive without a Crypt4GH header: {bare[:5]}")
    say(
        f"\nthe archive at rest: {len(before)} files, every one a Crypt4GH body with its header in {archive.header_store_url}"
    )
    say("  " + genomhub_command(["archive", "check"], national).strip().splitlines()[-1])

    recorded = _recorded(home)
    on_disk = (s for s in recorded if s.url.endswith((".fastq.gz", ".fq.gz")) and filesystem(s.url)[1] in before)
    sample = next(on_disk, None)  # one of the hot tier (the data-out story sent a sample to tape)
    if sample is None:
        raise click.ClickException("the receiver recorded no archived FASTQ to take out")
    exported = home / "exported.c4gh"
    decrypted = home / "exported.plain"
    genomhub_command(["archive", "export", sample.url, "--out", str(exported)], national)
    keys = home / "keys"
    passphrase = national["GENOMHUB_ARCHIVE_KEY_PASSPHRASE"]
    with exported.open("rb") as source, decrypted.open("wb") as target:
        subprocess.run(
            [str(CRYPT4GH), "decrypt", "--sk", str(keys / "archive.sec")],
            stdin=source,
            stdout=target,
            env={**os.environ, "C4GH_PASSPHRASE": passphrase},
            check=True,
        )
    plain = _sha256(decrypted)
    decrypted.unlink()
    if plain != sample.sha256:
        raise click.ClickException(f"crypt4gh decrypted {sample.url} to other bytes than the region sent")
    say(
        f"  `genomhub archive export` + `crypt4gh decrypt --sk archive.sec`: {sample.url.rsplit('/', 1)[-1]} "
        f"comes back with the sha256 the region reported ({plain[:16]}...)"
    )

    rotated_keys = home / "keys-rotated"
    write_key_pair(rotated_keys, passphrase, comment="genomhub demo: the archive key after rotation")
    rotation = {
        **national,
        "GENOMHUB_ARCHIVE_SECRET_KEY": str(rotated_keys / "archive.sec"),
        "GENOMHUB_ARCHIVE_PUBLIC_KEY": str(rotated_keys / "archive.pub"),
        "GENOMHUB_ARCHIVE_PREVIOUS_SECRET_KEY": str(keys / "archive.sec"),
    }
    say("  " + genomhub_command(["archive", "rotate-key"], rotation).strip().splitlines()[-1])
    after = bodies_on_disk(archive.store_url)
    rewritten = sorted(path for path in before if after.get(path) != before[path])
    if rewritten:
        raise click.ClickException(f"the key rotation touched bodies: {rewritten[:5]}")
    retired = {k: v for k, v in rotation.items() if not k.startswith("GENOMHUB_ARCHIVE_PREVIOUS")}
    new_key = load_archive_key(rotated_keys / "archive.sec", rotated_keys / "archive.pub", passphrase)
    say(
        f"  rotated to archive key {new_key.fingerprint}: {len(before)} bodies, 0 rewritten "
        "(inode, mtime and sha256 of each unchanged); with the old key retired, "
        + genomhub_command(["archive", "check"], retired).strip().splitlines()[-1]
    )
    # The new pair becomes the home's key, so a stack started on this home again opens it.
    retired_keys = home / "keys-retired"
    retired_keys.mkdir(mode=0o700)
    for name in ("archive.sec", "archive.pub"):
        (keys / name).rename(retired_keys / name)
        (rotated_keys / name).rename(keys / name)
    rotated_keys.rmdir()
