"""What a whole-file working copy is made of: the archive's header re-encrypted to the
department's key, then the archive's body as stored, each segment's tag checked on the way.

No plaintext exists anywhere on the way: the body is never decrypted for sending (its
segments are opened only to check their Poly1305 tags, and what is sent is the stored
ciphertext), and the department's secret key opens the result as any Crypt4GH file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from services.access.objects import ArchivedObject
from shared.encryption import ArchiveKey, BodyDecryptor, body_size, reencrypt_header
from shared.headers import HeaderStore
from shared.storage import open_archived
from shared.tiers import ArchiveTiers

BATCH_SEGMENTS = 16
"""Segments read per step of a download (1 MiB): between steps the grant is looked at again."""
GRANT_RECHECK_SECONDS = 0.5
"""How often a download in progress reads its grant again from the database, for a
revocation made on another replica (one made on this replica cuts the stream at once)."""


@dataclass(frozen=True)
class Delivery:
    """Where the service finds what a working copy needs, and how it signs its URLs."""

    headers: HeaderStore
    archive_key: Callable[[], ArchiveKey]
    url_secret: bytes
    url_minutes: int
    tiers: ArchiveTiers | None = None
    """Where bodies are now (a cold one is recalled before its copy goes); None: the archive's one tier."""


@dataclass
class WholeFile:
    """One whole-file working copy being sent: ``header`` first, then ``batches()``."""

    header: bytes
    body: BodyDecryptor
    size: int

    def batches(self) -> Iterator[list[bytes]]:
        """The body's stored segments, :data:`BATCH_SEGMENTS` at a time, each checked."""
        segments = self.body.sealed_segments()
        while True:
            batch = [s for _, s in zip(range(BATCH_SEGMENTS), segments, strict=False)]
            if not batch:
                return
            yield batch

    def close(self) -> None:
        self.body.close()


def whole_file(found: ArchivedObject, delivery: Delivery, recipient: bytes) -> WholeFile:
    """Open the working copy of ``found`` for ``recipient`` (raises the encryption errors of a
    header that does not open, and storage errors of a body that cannot be read)."""
    key = delivery.archive_key()
    header = reencrypt_header(delivery.headers.read(found.url), key, recipient)
    body = open_archived(found.url, found.size, delivery.headers, key, delivery.tiers)
    return WholeFile(header, body, len(header) + body_size(found.size))
