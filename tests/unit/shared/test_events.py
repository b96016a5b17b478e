"""The event contract: checked-in schemas match the models; ids and money stay exact."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import jsonschema
import pytest

from shared.envelope import UndecodableEvent, decode, derive_id, encode
from shared.events import EVENT_MODELS, Event, FileReceived, Indexed, render_schema
from tests.ids import issued_id


@pytest.mark.parametrize("model", EVENT_MODELS, ids=lambda m: m.event_name)
def test_checked_in_schema_matches_the_model(model: type[Event]) -> None:
    path = model.schema_path()
    assert path.exists(), f"{path} is missing: run `genomhub schemas write`"
    assert path.read_text() == render_schema(model), (
        f"{path.name} drifted from shared/events.py: run `genomhub schemas write` and review the change"
    )


def submission() -> dict[str, object]:
    return {
        "submission_id": issued_id("sub-1"),
        "region": "syddanmark",
        "department": "OUH",
        "sample_id": "S-1",
        "patient_id": "P-1",
        "analysis_type": "WGS",
        "platform": "ILLUMINA",
        "received_at": datetime(2026, 1, 31, 23, 30, tzinfo=UTC),
    }


def received() -> FileReceived:
    return FileReceived.model_validate(
        {
            "submission": submission(),
            "files": [
                {
                    "name": "R1.fastq.gz",
                    "role": "raw_reads",
                    "url": "file:///a/R1.fastq.gz",
                    "size": 1,
                    "sha256": "a" * 64,
                    "md5": "b" * 32,
                }
            ],
        }
    )


def test_an_event_validates_against_its_own_schema() -> None:
    event = received()
    schema = json.loads(FileReceived.schema_path().read_text())
    jsonschema.validate(json.loads(event.model_dump_json()), schema)
    broken = json.loads(event.model_dump_json())
    broken["files"][0]["sha256"] = "not-a-digest"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_genome_equivalents_travel_as_exact_decimal_strings() -> None:
    event = Indexed.model_validate(
        {
            "submission": submission(),
            "status": "harmonised",
            "accepted": True,
            "genome_equivalents": Decimal("1.123456"),
            "files": 3,
        }
    )
    data = json.loads(event.model_dump_json())
    assert data["genome_equivalents"] == "1.123456"
    assert Indexed.model_validate(data).genome_equivalents == Decimal("1.123456")


def test_derived_ids_are_deterministic_and_distinct() -> None:
    a = derive_id("cause-1", "validator", "t")
    assert a == derive_id("cause-1", "validator", "t")
    assert a != derive_id("cause-2", "validator", "t")
    assert a != derive_id("cause-1", "harmoniser", "t")


def test_decode_names_what_is_wrong() -> None:
    headers, value = encode(received(), event_id="e1", source="/test")
    assert decode(headers, value, FileReceived).data == received()
    cases = {
        "missing_header": ([h for h in headers if h[0] != "ce_id"], value),
        "not_json": (headers, b"\xff\xfe"),
        "schema": (headers, b"{}"),
        "unknown_type": ([(k, b"x.y" if k == "ce_type" else v) for k, v in headers], value),
        "unexpected_type": (
            [(k, Indexed.ce_type().encode() if k == "ce_type" else v) for k, v in headers],
            value,
        ),
    }
    for code, (h, v) in cases.items():
        with pytest.raises(UndecodableEvent) as info:
            decode(h, v, FileReceived)
        assert info.value.code == code
