"""Schema-valid but impossible events are refused on decode and on emit, each with its code.

Issue 12, items 2, 3 and 11: a path as a submission id, a billion genome equivalents, a
receipt in 1900 or 9999, CPR-like ids, ``.`` and ``..`` as pseudonyms.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from services.receiver.archive import Layout
from shared.envelope import ImpossibleEvent, RefusedEvent, UndecodableEvent, decode, encode, require_archived
from shared.events import (
    MAX_GENOME_EQUIVALENTS_PER_SAMPLE,
    Indexed,
    Pseudonym,
    RefundCalculated,
    SubmissionId,
    new_submission_id,
)
from shared.identifiers import contains_cpr
from shared.paths import PathEscape, beneath
from tests.ids import issued_id


def indexed_payload(**submission: Any) -> dict[str, Any]:
    return {
        "submission": {
            "submission_id": issued_id("meaning"),
            "region": "nordjylland",
            "department": "Aalborg UH Klinisk Genetik",
            "sample_id": "S-77",
            "patient_id": "P-77",
            "analysis_type": "WGS",
            "platform": "ILLUMINA",
            "received_at": "2026-03-02T10:00:00Z",
            **submission,
        },
        "status": "harmonised",
        "accepted": True,
        "genome_equivalents": "1.02",
        "files": 3,
    }


def decoded(payload: dict[str, Any]) -> Indexed:
    good = Indexed.model_validate(indexed_payload())
    headers, _ = encode(good, event_id="e-1", source="/genomhub/test")
    return decode(headers, json.dumps(payload).encode(), Indexed).data


def refusal_code(payload: dict[str, Any]) -> str:
    with pytest.raises(UndecodableEvent) as caught:
        decoded(payload)
    return caught.value.code


def test_a_plain_event_decodes() -> None:
    assert decoded(indexed_payload()).submission.sample_id == "S-77"


@pytest.mark.parametrize("sid", ["/tmp/victim", "../../etc", "..", "sub-1", "A" * 32, "0" * 31, ""])
def test_a_submission_id_not_of_the_receiver_s_shape_is_refused(sid: str) -> None:
    assert refusal_code(indexed_payload(submission_id=sid)) == "unsafe_id"


@pytest.mark.parametrize("pseudonym", [".", "..", ".hidden", "-rf", "a/b", "a\\b", "x y", "_x"])
@pytest.mark.parametrize("field", ["sample_id", "patient_id"])
def test_a_pseudonym_is_a_plain_segment(field: str, pseudonym: str) -> None:
    assert refusal_code(indexed_payload(**{field: pseudonym})) == "unsafe_id"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sample_id", "S-120385-1234"),
        ("patient_id", "12-03-85-1234"),
        ("department", "Klinisk genetik 120385\u20131234"),
        ("platform", "ILLUMINA 1203851234"),
    ],
)
def test_a_cpr_number_in_any_identifier_or_typed_field_is_refused(field: str, value: str) -> None:
    with pytest.raises(UndecodableEvent) as caught:
        decoded(indexed_payload(**{field: value}))
    assert caught.value.code == "direct_identifier"
    assert "1234" not in str(caught.value), "the refusal never quotes the value"


@pytest.mark.parametrize("moment", ["1900-01-15T10:00:00Z", "9999-12-15T10:00:00Z", "2018-12-31T12:00:00Z"])
def test_a_receipt_outside_the_service_s_life_is_refused(moment: str) -> None:
    assert refusal_code(indexed_payload(received_at=moment)) == "impossible_time"


def test_genome_equivalents_of_one_sample_are_bounded() -> None:
    payload = indexed_payload()
    payload["genome_equivalents"] = "1000000000"
    assert refusal_code(payload) == "impossible_genome_equivalents"
    payload["genome_equivalents"] = str(MAX_GENOME_EQUIVALENTS_PER_SAMPLE)
    assert decoded(payload).genome_equivalents == MAX_GENOME_EQUIVALENTS_PER_SAMPLE


def test_an_impossible_event_is_not_emitted() -> None:
    good = Indexed.model_validate(indexed_payload())
    forged = good.model_copy(update={"genome_equivalents": Decimal(10**9)})  # skips validation
    with pytest.raises(ImpossibleEvent) as caught:
        encode(forged, event_id="e-2", source="/genomhub/test")
    assert caught.value.code == "impossible_genome_equivalents"


def statement(**changes: Any) -> dict[str, Any]:
    return {
        "month": "2026-01",
        "statement_id": "0b6f7a8e-2f61-4f43-9d1e-4b8f0c6a5e27",
        "rate_dkk": 264,
        "total_genome_equivalents": "3",
        "total_ore": 79200,
        "balance_before_ore": 100000,
        "balance_after_ore": 20800,
        "regions": [
            {"region": "hovedstaden", "genome_equivalents": "2", "amount_ore": 52800},
            {"region": "sjaelland", "genome_equivalents": "1", "amount_ore": 26400},
        ],
        "closed_at": datetime(2026, 2, 3, tzinfo=UTC),
        **changes,
    }


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"total_ore": 1}, "inconsistent_event"),
        ({"balance_after_ore": 100000}, "inconsistent_event"),
        ({"month": "1900-01"}, "impossible_time"),
        ({"month": "9999-12"}, "impossible_time"),
        ({"closed_at": datetime(9999, 1, 1, tzinfo=UTC)}, "impossible_time"),
        ({"statement_id": "../x"}, "unsafe_id"),
    ],
)
def test_a_statement_adds_up_and_lies_in_the_service_s_life(changes: dict[str, Any], code: str) -> None:
    assert RefundCalculated.model_validate(statement()).total_ore == 79200
    with pytest.raises(ValidationError) as caught:
        RefundCalculated.model_validate(statement(**changes))
    assert code in {e["type"] for e in caught.value.errors()}


def test_the_archive_layout_keeps_a_sample_inside_its_region(tmp_path: Path) -> None:
    layout = Layout(tmp_path.as_uri())
    sid = issued_id("layout")
    assert layout.final("hovedstaden", "S-1", sid, "R1.fastq.gz").startswith(
        f"{tmp_path.as_uri()}/hovedstaden/S-1/"
    )
    for sample in ("..", ".", "../sjaelland", "/etc"):
        with pytest.raises(PathEscape):
            layout.final("hovedstaden", sample, sid, "R1.fastq.gz")
    with pytest.raises(PathEscape):
        layout.partial("../../x", "R1.fastq.gz")


def test_files_outside_the_archive_are_refused(tmp_path: Path) -> None:
    store = (tmp_path / "store").as_uri()
    require_archived(store, [f"{store}/hovedstaden/S-1/{issued_id('a')}/R1.fastq.gz"])
    for url in ("file:///etc/shadow", f"{store}/../outside", f"{store}-other/x"):
        with pytest.raises(RefusedEvent) as caught:
            require_archived(store, [url])
        assert caught.value.code == "outside_archive"


PSEUDONYM: TypeAdapter[str] = TypeAdapter(Pseudonym)
SUBMISSION_ID: TypeAdapter[str] = TypeAdapter(SubmissionId)


@given(st.text(max_size=20))
def test_property_an_accepted_pseudonym_is_one_segment_inside_its_region(text: str) -> None:
    try:
        pseudonym = PSEUDONYM.validate_python(text)
    except ValidationError:
        return
    assert pseudonym not in (".", "..") and "/" not in pseudonym and not contains_cpr(pseudonym)
    assert beneath("/srv/store", "hovedstaden", pseudonym).startswith("/srv/store/hovedstaden/")


@given(st.integers(0, 200))
def test_property_issued_submission_ids_pass_their_own_type(_: int) -> None:
    sid = new_submission_id()
    assert SUBMISSION_ID.validate_python(sid) == sid
