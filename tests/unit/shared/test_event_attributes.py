"""What travels beside an event's data (CloudEvents headers, the record key) is held to the
same rules as the data, because it is stored and read without it.

The catalogue's timeline keeps ``ce_id`` and ``ce_source`` as they come and orders by
``ce_time``; billing's accruals keep ``ce_id``; logs and traces carry ``ce_subject``; the
record key chooses the partition and so the order a sample's events keep. A compromised
producer chooses all of them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.envelope import Headers, UndecodableEvent, decode, encode
from shared.events import EVENT_MODELS, Event, Indexed, Region, sample_key
from tests.ids import issued_id
from tests.unit.shared.test_event_meaning import indexed_payload

CPR = "120385-1234"


def good() -> Indexed:
    return Indexed.model_validate(indexed_payload())


def record(**replace: bytes) -> tuple[Headers, bytes]:
    headers, value = encode(good(), event_id="e-1", source="/genomhub/indexer")
    return [(k, replace.pop(k, v)) for k, v in headers], value


def refusal(headers: Headers, value: bytes, key: bytes | None = None) -> UndecodableEvent:
    with pytest.raises(UndecodableEvent) as caught:
        if key is None:
            decode(headers, value, Indexed)
        else:
            decode(headers, value, Indexed, key)
    assert CPR not in str(caught.value) and "1203851234" not in str(caught.value)
    return caught.value


def test_the_headers_an_encoder_writes_decode_with_the_data_s_own_key() -> None:
    headers, value = record()
    envelope = decode(headers, value, Indexed, good().key().encode())
    assert envelope.subject == good().submission.submission_id


@pytest.mark.parametrize("header", ["ce_id", "ce_source"])
@pytest.mark.parametrize("cpr", [CPR, "1203851234", "12.03.85 1234", "１２０３８５–１２３４"])
def test_a_cpr_number_in_the_id_or_the_source_is_refused_as_such(header: str, cpr: str) -> None:
    prefix = "/genomhub/" if header == "ce_source" else "e-"
    headers, value = record(**{header: (prefix + cpr).encode()})
    assert refusal(headers, value).code == "direct_identifier"


@pytest.mark.parametrize(
    "event_id", ["", " e", "e 1", "e\n1", "e/1", "../e", "e\u202e1", "x" * 201, "ｅ-1", "-rf"]
)
def test_an_event_id_is_a_short_plain_token(event_id: str) -> None:
    headers, value = record(ce_id=event_id.encode())
    assert refusal(headers, value).code == "unsafe_id"


@pytest.mark.parametrize(
    "source", ["", "genomhub", "/genomhub/x y", "/g\x00", "https://evil/x?y", "/" + "s" * 200]
)
def test_a_source_is_a_short_plain_path(source: str) -> None:
    headers, value = record(ce_source=source.encode())
    assert refusal(headers, value).code == "unsafe_id"


def test_a_subject_that_names_another_submission_is_refused() -> None:
    headers, value = record(ce_subject=issued_id("another").encode())
    assert refusal(headers, value).code == "inconsistent_event"


def test_a_missing_subject_is_the_data_s() -> None:
    headers, value = record()
    headers = [(k, v) for k, v in headers if k != "ce_subject"]
    assert decode(headers, value, Indexed).subject == good().submission.submission_id


@pytest.mark.parametrize(
    "key",
    [
        sample_key(Region.HOVEDSTADEN, "S-77"),  # another region's sample of the same pseudonym
        sample_key(Region.NORDJYLLAND, "S-78"),
        "S-78",
        "",
    ],
)
def test_a_record_keyed_by_another_sample_than_its_data_is_refused(key: str) -> None:
    headers, value = record()
    assert refusal(headers, value, key.encode()).code == "inconsistent_event"


def test_a_record_without_a_key_is_refused() -> None:
    headers, value = record()
    with pytest.raises(UndecodableEvent) as caught:
        decode(headers, value, Indexed, None)
    assert caught.value.code == "inconsistent_event"


def test_a_record_of_the_log_from_before_region_keys_still_decodes() -> None:
    headers, value = record()
    assert decode(headers, value, Indexed, b"S-77").data == good()


@pytest.mark.parametrize("moment", ["2026-03-02T10:00:00", "yesterday", ""])
def test_a_time_that_is_no_instant_is_refused(moment: str) -> None:
    headers, value = record(ce_time=moment.encode())
    assert refusal(headers, value).code == "bad_time"


@pytest.mark.parametrize(
    "moment",
    [
        "1900-01-01T00:00:00Z",
        "0001-01-01T00:00:00+00:00",
        "9999-12-31T23:59:59Z",
        pytest.param((datetime.now(UTC) + timedelta(hours=1)).isoformat(), id="an-hour-from-now"),
    ],
)
def test_a_time_outside_the_service_s_life_is_refused(moment: str) -> None:
    headers, value = record(ce_time=moment.encode())
    assert refusal(headers, value).code == "impossible_time"


@pytest.mark.parametrize("header", ["ce_type", "ce_specversion", "content-type", "ce_time"])
def test_a_refused_header_s_value_is_not_quoted(header: str) -> None:
    headers, value = record(**{header: CPR.encode()})
    refused = refusal(headers, value)  # raises unless decode refuses the record
    assert CPR not in str(refused) and "1203851234" not in str(refused)


@given(
    st.text(alphabet="abcdef0123456789-._:", max_size=20),
    st.sampled_from(["1203851234", "120385-1234", "12-03-85-1234", "120385.1234"]),
    st.text(alphabet="abcdef-._:", max_size=20),
)
def test_any_event_id_holding_a_cpr_number_is_refused(before: str, cpr: str, after: str) -> None:
    headers, value = record(ce_id=("e" + before + "x" + cpr + after).encode())
    with pytest.raises(UndecodableEvent) as caught:
        decode(headers, value, Indexed)
    assert caught.value.code == "direct_identifier"


@pytest.mark.parametrize("where", ["top", "submission"])
def test_a_cpr_number_as_a_field_s_name_is_refused_as_such_and_never_quoted(where: str) -> None:
    headers, value = record()
    data = json.loads(value)
    (data if where == "top" else data["submission"])[CPR] = 1
    assert refusal(headers, json.dumps(data).encode()).code == "direct_identifier"


def test_a_header_s_name_chosen_by_the_producer_is_not_quoted() -> None:
    headers, value = record()
    assert refusal([*headers, (f"ce_{CPR}", b"\xff")], value).code == "bad_header"


@pytest.mark.parametrize("model", EVENT_MODELS, ids=lambda m: m.event_name)
def test_a_type_s_schema_uri_is_its_checked_in_schema_s_id(model: type[Event]) -> None:
    assert json.loads(model.schema_path().read_text())["$id"] == model.schema_uri()


def test_every_record_names_its_data_s_schema() -> None:
    """``ce_dataschema``: a reader without genomhub's models finds the schema to check by."""
    headers, _ = encode(good(), event_id="e-1", source="/genomhub/indexer")
    assert dict(headers)["ce_dataschema"] == Indexed.schema_uri().encode()


@pytest.mark.parametrize("other", [m for m in EVENT_MODELS if m is not Indexed], ids=lambda m: m.event_name)
def test_a_record_naming_another_type_s_schema_is_inconsistent(other: type[Event]) -> None:
    headers, value = record(ce_dataschema=other.schema_uri().encode())
    assert refusal(headers, value).code == "inconsistent_event"


@given(st.text(max_size=80).filter(lambda s: s != Indexed.schema_uri()))
def test_no_schema_but_the_type_s_own_decodes(schema: str) -> None:
    headers, value = record(ce_dataschema=schema.encode())
    assert refusal(headers, value).code == "inconsistent_event"


def test_a_record_from_before_the_schema_header_still_decodes() -> None:
    """The log keeps every record forever and a replay reads from its start: records written
    before ``ce_dataschema`` was carried have none, and are their type's."""
    headers, value = record()
    old = [(k, v) for k, v in headers if k != "ce_dataschema"]
    assert decode(old, value, Indexed).data == good()


def test_a_non_utf8_schema_header_is_named() -> None:
    headers, value = record(ce_dataschema=b"\xff")
    error = refusal(headers, value)
    assert error.code == "bad_header" and "ce_dataschema" in str(error)
