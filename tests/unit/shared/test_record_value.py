"""A record's value that Python's JSON parser mishandles is a dead letter, never a stopped
consumer: before, a 5000-digit integer raised ``ValueError`` and deep nesting raised
``RecursionError`` out of ``decode``, past the bus's handling, on the same record at every
restart. ``NaN``, ``Infinity`` and ``1e999`` are not JSON numbers; sizes and counts beyond
what the stores hold are refused instead of overflowing there.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.envelope import UndecodableEvent, decode, encode
from shared.events import MAX_COUNT, Harmonised, Indexed
from tests.unit.indexer.factories import harmonised, submission
from tests.unit.shared.test_event_meaning import indexed_payload


def refusal(value: bytes, model: type[Indexed] | type[Harmonised] = Indexed) -> str:
    good = Indexed.model_validate(indexed_payload()) if model is Indexed else harmonised(submission(1))
    headers, _ = encode(good, event_id="e-1", source="/genomhub/test")
    with pytest.raises(UndecodableEvent) as caught:
        decode(headers, value, model)
    return caught.value.code


@pytest.mark.parametrize(
    "value",
    [
        b'{"files": ' + b"1" * 5000 + b"}",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a": ' * 50_000 + b"1" + b"}" * 50_000,
        b'{"files": NaN}',
        b'{"files": Infinity}',
        b'{"files": -Infinity}',
        b'{"genome_equivalents": 1e999}',
    ],
)
def test_what_python_s_json_parser_mishandles_is_not_json(value: bytes) -> None:
    assert refusal(value) == "not_json"


def harmonised_with(**fields: Any) -> bytes:
    data: dict[str, Any] = json.loads(harmonised(submission(1)).model_dump_json())
    data.update(fields)
    return json.dumps(data).encode()


@pytest.mark.parametrize("field", ["raw_bases", "attempts"])
def test_a_count_beyond_what_the_stores_hold_is_refused(field: str) -> None:
    assert refusal(harmonised_with(**{field: MAX_COUNT + 1}), Harmonised) == "schema"


def test_a_file_size_beyond_what_the_stores_hold_is_refused() -> None:
    data: dict[str, Any] = json.loads(harmonised(submission(1)).model_dump_json())
    data["files"][0]["size"] = 10**30
    assert refusal(json.dumps(data).encode(), Harmonised) == "schema"


def test_an_infinite_duration_is_refused() -> None:
    data: dict[str, Any] = json.loads(harmonised(submission(1)).model_dump_json())
    text = json.dumps(data).replace('"duration_s": ', '"duration_s": 1e999, "x": ', 1)
    assert refusal(text.encode(), Harmonised) == "not_json"
