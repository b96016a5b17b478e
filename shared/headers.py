"""The header store: where the Crypt4GH header of every archived body lives.

A body in the archive is written once and may end on tape (design.md section 12), where
reading it back costs a recall of hours. Its header, a few hundred bytes that hold the
body's data key encrypted to NGC's archive key, is what a key rotation rewrites and what a
working copy replaces for its recipient. So the two live apart: bodies under the archive's
store, headers under ``GENOMHUB_HEADER_STORE`` (a hot fsspec URL of its own), at the same
relative path with :data:`HEADER_SUFFIX`. Rotating the key rewrites this folder and never
touches a body; a body moved between storage tiers keeps its header, because the path
relative to the archive root does not change.

Why not a database table, as design.md section 13 first said: every service that reads
bytes (the validator, the harmoniser, the access service, the archive's tier moves) would
need another service's database, and the header belongs with the body it opens rather than
with any one service's state. A file per header keeps the archive self-describing:
``cat <header> <body>`` is an ordinary Crypt4GH file that the ``crypt4gh`` command line
decrypts. The header store is backed up with the databases (it is small and changes on
rotation); a restore needs both it and the bodies, and a body without its header is
unreadable by design.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import fsspec
from fsspec.implementations.local import LocalFileSystem

from shared.config import ArchiveSettings
from shared.encryption import (
    EncryptionError,
)
from shared.paths import beneath, inside

HEADER_SUFFIX = ".c4gh-header"
"""What a header's name adds to its body's name."""

MAX_HEADER = 64 << 10
"""More than any archive header needs (one packet per recipient is ~124 bytes): a larger
object in the header store is refused rather than read into memory."""


class MissingHeader(EncryptionError):
    """An archived body has no header: it cannot be read (or it was never encrypted)."""


@dataclass(frozen=True)
class HeaderStore:
    """The headers of the bodies under ``store``, kept under ``headers`` at the same paths."""

    store: str
    headers: str

    @classmethod
    def of(cls, settings: ArchiveSettings) -> HeaderStore:
        return cls(settings.store_url, settings.header_store_url)

    def url_for(self, body_url: str) -> str:
        """Where the header of the body at ``body_url`` lives (the body must be in the store)."""
        relative = inside(self.store, body_url)[len(self.store.rstrip("/")) + 1 :]
        *folders, name = relative.split("/")
        return beneath(self.headers, *folders, name + HEADER_SUFFIX)

    def read(self, body_url: str) -> bytes:
        fs, path = fsspec.core.url_to_fs(self.url_for(body_url))
        try:
            with fs.open(path, "rb") as handle:
                header = handle.read(MAX_HEADER + 1)
        except FileNotFoundError:
            raise MissingHeader(
                f"{body_url} has no Crypt4GH header in the header store: it cannot be decrypted"
            ) from None
        if len(header) > MAX_HEADER:
            raise MissingHeader(f"the header of {body_url} is larger than {MAX_HEADER} bytes: not a header")
        return bytes(header)

    def write(self, body_url: str, header: bytes) -> None:
        """Stores ``header`` for the body, replacing any earlier one whole or not at all.

        A rotation interrupted mid-write leaves either the old header or the new, never a
        torn one: the header is written under a temporary name and renamed into place (on
        S3, a single PUT is atomic by itself)."""
        url = self.url_for(body_url)
        fs, path = fsspec.core.url_to_fs(url)
        fs.makedirs(posixpath.dirname(path), exist_ok=True)
        if not isinstance(fs, LocalFileSystem):
            with fs.open(path, "wb") as handle:
                handle.write(header)
            return
        temporary = f"{path}.part-{uuid.uuid4().hex}"
        with open(temporary, "wb") as handle:
            handle.write(header)
            handle.flush()
            os.fsync(handle.fileno())
        fs.mv(temporary, path)

    def remove(self, body_url: str) -> None:
        fs, path = fsspec.core.url_to_fs(self.url_for(body_url))
        if fs.exists(path):
            fs.rm(path)

    def exists(self, body_url: str) -> bool:
        fs, path = fsspec.core.url_to_fs(self.url_for(body_url))
        return bool(fs.exists(path))

    def bodies(self) -> Iterator[str]:
        """The URL of every body that has a header, in a stable order (for a resumable rotation)."""
        fs, root = fsspec.core.url_to_fs(self.headers)
        if not fs.exists(root):
            return
        prefix = root.rstrip("/") + "/"
        for path in sorted(fs.find(root)):
            if not path.endswith(HEADER_SUFFIX) or not path.startswith(prefix):
                continue
            relative = path[len(prefix) : -len(HEADER_SUFFIX)]
            yield beneath(self.store, *relative.split("/"))
