"""Which bodies an event tells the archive about: the receiver's files as received (raw) and
the harmoniser's outputs (harmonised), each by its path relative to the archive root, the
key its header has in the header store."""

from __future__ import annotations

from dataclasses import dataclass

from shared.config import FileKind
from shared.envelope import require_archived
from shared.events import FileReceived, Harmonised, sample_key
from shared.paths import inside


@dataclass(frozen=True)
class Arrival:
    path: str
    sample: str
    kind: FileKind
    size: int
    submission_id: str


def _relative(store_url: str, url: str) -> str:
    return inside(store_url, url)[len(store_url.rstrip("/")) + 1 :]


def arrivals(event: FileReceived | Harmonised, store_url: str) -> list[Arrival]:
    """The bodies ``event`` names, refused (``outside_archive``) if any lies outside the
    archive: a body elsewhere is not the archive's to move. A failed harmonisation has none."""
    sample = sample_key(event.submission.region, event.submission.sample_id)
    named: list[tuple[str, int, FileKind]]
    if isinstance(event, FileReceived):
        named = [(f.url, f.size, "raw") for f in event.files]
    elif event.status == "succeeded":
        named = [(o.url, o.size, "harmonised") for o in event.outputs]
    else:
        named = []
    require_archived(store_url, [url for url, _, _ in named])
    submission_id = event.submission.submission_id
    return [
        Arrival(_relative(store_url, url), sample, kind, size, submission_id) for url, size, kind in named
    ]
