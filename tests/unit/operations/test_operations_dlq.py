"""Dead letters without a broker: ids, headers, the redrive ledger, selection, printing."""

from __future__ import annotations

import json

import pytest

from services.operations.dlq import (
    LIST_COLUMNS,
    DeadLetter,
    DlqError,
    Ledger,
    LetterId,
    format_letter,
    list_rows,
    resolve_dlq_topic,
    select,
)
from shared.bus import dead_letter_headers

DLQ = "genomhub.validated.v1.dlq"
DLQS = ["genomhub.file-received.v1.dlq", DLQ]
ORIGINAL = [("ce_id", b"id-1"), ("ce_subject", b"sub-1"), ("traceparent", b"00-abc-def-01")]


def letter(
    offset: int, *, headers: list[tuple[str, bytes]] | None = None, value: bytes = b'{"a": 1}'
) -> DeadLetter:
    if headers is None:
        headers = dead_letter_headers(
            ORIGINAL,
            service="harmoniser",
            error="ValueError: bad contig\n  at line 3",
            code="handler_failed",
            topic="genomhub.validated.v1",
            partition=2,
            offset=40 + offset,
        )
    return DeadLetter(DLQ, 0, offset, 1_768_471_200_000, b"S-1", value, headers)


def test_letter_ids() -> None:
    parsed = LetterId.parse(f"{DLQ}:0:17")
    assert parsed == LetterId(DLQ, 0, 17)
    assert str(parsed) == f"{DLQ}:0:17"
    for bad in ["17", f"{DLQ}:x:1", ":0:1", "genomhub.validated.v1:0:1", f"{DLQ}:0:-1"]:
        with pytest.raises(DlqError):
            LetterId.parse(bad)


def test_topic_names_resolve_from_dlq_source_or_event_name() -> None:
    assert resolve_dlq_topic(DLQ, DLQS) == DLQ
    assert resolve_dlq_topic("genomhub.validated.v1", DLQS) == DLQ
    assert resolve_dlq_topic("validated", DLQS) == DLQ
    with pytest.raises(DlqError, match="no dead-letter topic for 'indexed'"):
        resolve_dlq_topic("indexed", DLQS)


def test_headers_of_a_dead_letter() -> None:
    dead = letter(3)
    assert dead.source_topic == "genomhub.validated.v1"
    assert dead.source_partition == 2
    assert dead.dlq("service") == "harmoniser"
    assert dead.error_line == "ValueError: bad contig"
    assert dead.original_headers() == ORIGINAL
    assert dead.redrive_target() == ("genomhub.validated.v1", 2)
    assert dead.time.tzinfo is not None


def test_a_letter_without_its_source_cannot_be_redriven() -> None:
    dead = letter(0, headers=[("ce_id", b"x")])
    with pytest.raises(DlqError, match="source topic is unknown"):
        dead.redrive_target()
    # without the bus's time header the record's own timestamp tells when
    assert dead.time.year == 2026


def test_ledger_watermark_and_single_redrives() -> None:
    ledger = Ledger()
    assert not ledger.redriven(0)
    ledger = ledger.with_redriven([3, 5])
    assert ledger == Ledger(0, frozenset({3, 5}))
    assert ledger.redriven(3) and not ledger.redriven(4)
    ledger = ledger.with_redriven([0, 1, 2])
    assert ledger == Ledger(4, frozenset({5}))
    ledger = ledger.with_redriven([4])
    assert ledger == Ledger(6, frozenset())
    # retention removed offsets the ledger never saw: they no longer hold it back
    assert Ledger().with_redriven([12], log_start=10) == Ledger(10, frozenset({12}))


def test_ledger_metadata_round_trip() -> None:
    ledger = Ledger(4, frozenset({6, 7, 8, 10, 12, 13}))
    assert ledger.metadata() == "redriven-v1:6-8,10,12-13"
    assert Ledger.parse(4, ledger.metadata()) == ledger
    assert Ledger.parse(-1, "") == Ledger()
    assert Ledger.parse(9, "") == Ledger(9)
    assert Ledger.parse(9, "redriven-v1:") == Ledger(9)
    # offsets under the watermark are implied by it
    assert Ledger.parse(9, "redriven-v1:3,11") == Ledger(9, frozenset({11}))
    with pytest.raises(DlqError, match="is not"):
        Ledger.parse(3, "something else")
    with pytest.raises(DlqError, match="corrupt"):
        Ledger.parse(3, "redriven-v1:4-x")


def test_select_everything_pending() -> None:
    letters = [letter(0), letter(1), letter(2, headers=[("ce_id", b"x")]), letter(3)]
    ledgers = {(DLQ, 0): Ledger(1)}
    chosen = select(letters, ledgers)
    assert [x.offset for x in chosen.send] == [1, 3]
    assert [x.offset for x, _ in chosen.unsendable] == [2]
    assert chosen.already == []


def test_select_by_id() -> None:
    letters = [letter(0), letter(1)]
    chosen = select(
        letters, {(DLQ, 0): Ledger(1)}, [LetterId(DLQ, 0, 0), LetterId(DLQ, 0, 1), LetterId(DLQ, 0, 1)]
    )
    assert [x.offset for x in chosen.send] == [1]
    assert [x.offset for x in chosen.already] == [0]
    with pytest.raises(DlqError, match=r"no such dead letter: genomhub.validated.v1.dlq:0:7"):
        select(letters, {}, [LetterId(DLQ, 0, 7)])


def test_list_rows() -> None:
    (row,) = list_rows([letter(5)], {(DLQ, 0): Ledger(6)})
    fields = dict(zip(LIST_COLUMNS, row, strict=True))
    assert fields["topic"] == DLQ and fields["offset"] == 5
    assert fields["service"] == "harmoniser" and fields["code"] == "handler_failed"
    assert fields["source"] == "genomhub.validated.v1:2:45"
    assert fields["state"] == "redriven"
    assert fields["ce_id"] == "id-1" and fields["subject"] == "sub-1"
    assert fields["error"] == "ValueError: bad contig"
    assert str(fields["time"]).endswith("Z")


def test_show_pretty_prints_json_and_keeps_other_values() -> None:
    text = format_letter(letter(1, value=json.dumps({"b": [1, 2]}).encode()))
    assert f"dead letter {DLQ}:0:1" in text
    assert "  genomhub_dlq_code" in text and "handler_failed" in text
    assert '{\n  "b": [\n    1,\n    2\n  ]\n}' in text
    assert text.splitlines()[-1] == "}"
    raw = format_letter(letter(1, value=b"{not json"))
    assert raw.splitlines()[-1] == "{not json"
    binary = format_letter(letter(1, value=b"\xff\x00"))
    assert binary.splitlines()[-1] == repr(b"\xff\x00")
