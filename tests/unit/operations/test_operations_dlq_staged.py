"""Choosing the dead letters refused for bodies on tape that a recall has staged since."""

from __future__ import annotations

import json

from services.operations.dlq import DeadLetter, Ledger, bodies_named, staged_letters
from shared.bus import DLQ_HEADER_PREFIX
from shared.tiers import NEEDS_RECALL

ARCHIVE = "file:///srv/archive"


def letter(offset: int, value: object, code: str = NEEDS_RECALL) -> DeadLetter:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return DeadLetter(
        "genomhub.file-received.dlq",
        0,
        offset,
        0,
        b"k",
        raw,
        [
            (DLQ_HEADER_PREFIX + "code", code.encode()),
            (DLQ_HEADER_PREFIX + "topic", b"genomhub.file-received"),
        ],
    )


def event(*urls: str) -> dict[str, object]:
    return {"submission": {"region": "syddanmark"}, "files": [{"url": u, "name": u[-6:]} for u in urls]}


def test_the_bodies_an_event_names_are_its_urls_inside_the_archive_once_each() -> None:
    named = letter(
        1,
        {
            **event(f"{ARCHIVE}/a/R1.fq", f"{ARCHIVE}/a/R2.fq", f"{ARCHIVE}/a/R1.fq"),
            "elsewhere": "file:///etc/shadow",
            "prefix_only": f"{ARCHIVE}-other/x",
            "escaping": f"{ARCHIVE}/../etc/passwd",
        },
    )
    assert bodies_named(named, ARCHIVE) == [f"{ARCHIVE}/a/R1.fq", f"{ARCHIVE}/a/R2.fq"]
    assert bodies_named(letter(2, b"\xff not json"), ARCHIVE) == []
    deep = b"[" * 100_000 + json.dumps(f"{ARCHIVE}/a/R1.fq").encode() + b"]" * 100_000
    assert bodies_named(letter(3, deep), ARCHIVE) == []  # past the parser's depth: names none
    url = json.dumps(f"{ARCHIVE}/a/R1.fq").encode()
    nested = b'{"x": [' * 450 + url + b"]}" * 450  # as deep as the parser goes: found all the same
    assert bodies_named(letter(4, nested), ARCHIVE) == [f"{ARCHIVE}/a/R1.fq"]


def test_only_pending_tape_letters_whose_every_body_is_readable_go_back() -> None:
    staged = {f"{ARCHIVE}/a/R1.fq", f"{ARCHIVE}/a/R2.fq", f"{ARCHIVE}/c/R1.fq"}
    letters = [
        letter(10, event(f"{ARCHIVE}/a/R1.fq", f"{ARCHIVE}/a/R2.fq")),  # all staged: goes
        letter(11, event(f"{ARCHIVE}/b/R1.fq", f"{ARCHIVE}/a/R2.fq")),  # one still on tape: waits
        letter(12, event(f"{ARCHIVE}/a/R1.fq"), code="decode_error"),  # not a tape letter
        letter(13, {"files": []}),  # names no body: cannot be checked, waits
        letter(14, event(f"{ARCHIVE}/c/R1.fq")),  # staged, but redriven already
    ]
    ledgers = {("genomhub.file-received.dlq", 0): Ledger().with_redriven([14])}
    wait = staged_letters(letters, ledgers, ARCHIVE, staged.__contains__)
    assert [x.offset for x in wait.staged] == [10]
    assert [(x.offset, cold) for x, cold in wait.waiting] == [(11, [f"{ARCHIVE}/b/R1.fq"]), (13, [])]
