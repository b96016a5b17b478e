"""Submission ids for tests, of the shape the receiver issues, derived from a readable label."""

from __future__ import annotations

import hashlib

from shared.identifiers import contains_cpr


def issued_id(label: str) -> str:
    """32 lower-case hex digits, the same for the same label, never reading as a CPR number."""
    digest = hashlib.sha256(label.encode()).hexdigest()
    while contains_cpr(digest[:32]):
        digest = hashlib.sha256(digest.encode()).hexdigest()
    return digest[:32]
