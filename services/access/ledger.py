"""The audit ledger's chain, as pure functions: what an entry's hash is, and where a chain breaks.

Every entry carries the sha256 of the one before it (the first carries :data:`GENESIS`), and
its own sha256 is that of its canonical JSON (sorted keys, no spaces, UTF-8, its own hash
left out). Editing any entry in the database changes its hash, so either its stored hash no
longer matches or the next entry's link does: :func:`first_break` names the first such entry.
The store refuses UPDATE and DELETE as well (triggers); the chain is what proves it to
someone who does not trust the database's administrator, since its head is published.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.envelope import canonical_json

GENESIS = "0" * 64
"""The previous hash of the first entry."""


class Action:
    """What an entry records."""

    DISCOVERY = "discovery"
    REQUEST = "request"
    DECISION = "decision"
    REVOCATION = "revocation"
    REFUSED = "refused"
    READ = "read"
    DEPARTMENT_KEY = "department-key"
    DELIVERY = "delivery"
    PASSPORT = "passport"


@dataclass(frozen=True)
class Entry:
    """One ledger entry as stored: ``seq`` orders the chain, ``sha256`` closes it."""

    seq: int
    at: str
    actor: str
    action: str
    request_id: str | None
    case_reference: str
    concerns: tuple[str, ...]
    detail: Mapping[str, Any]
    prev_sha256: str
    sha256: str

    def body(self) -> dict[str, Any]:
        """Everything the hash covers: every field but the hash itself."""
        return {
            "seq": self.seq,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "request_id": self.request_id,
            "case_reference": self.case_reference,
            "concerns": list(self.concerns),
            "detail": dict(self.detail),
            "prev_sha256": self.prev_sha256,
        }


def entry_hash(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(dict(body))).hexdigest()


def chained(
    *,
    seq: int,
    at: str,
    actor: str,
    action: str,
    request_id: str | None,
    case_reference: str,
    concerns: Iterable[str],
    detail: Mapping[str, Any],
    prev_sha256: str,
) -> Entry:
    """A new entry after the one whose hash is ``prev_sha256``, with its hash computed."""
    draft = Entry(
        seq,
        at,
        actor,
        action,
        request_id,
        case_reference,
        tuple(sorted(set(concerns))),
        detail,
        prev_sha256,
        "",
    )
    return Entry(**{**draft.__dict__, "sha256": entry_hash(draft.body())})


@dataclass(frozen=True)
class Break:
    """Where a chain stops being provable, and why."""

    seq: int
    reason: str


def first_break(entries: Iterable[Entry]) -> Break | None:
    """The first entry (in ``seq`` order) whose hash or link is wrong; None if the chain holds."""
    previous = GENESIS
    expected_seq: int | None = None
    for entry in entries:
        if expected_seq is not None and entry.seq != expected_seq:
            return Break(entry.seq, f"entry {expected_seq} is missing")
        if entry.prev_sha256 != previous:
            return Break(entry.seq, "its previous hash is not the hash of the entry before it")
        if entry_hash(entry.body()) != entry.sha256:
            return Break(entry.seq, "its content does not hash to its recorded sha256 (edited)")
        previous = entry.sha256
        expected_seq = entry.seq + 1
    return None
