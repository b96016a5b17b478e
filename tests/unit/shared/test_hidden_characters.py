"""Typed text, file names and archive URLs hold nothing a reader does not see as itself,
and nothing that changes what their URL means.

A department named ``Genetik\\u202e...`` reads backwards in every statement and table; a
C1 control (U+009B, the terminal's escape introducer) reaches the operators' terminals
through ``genomhub dlq show``; a file named ``R1?.fq`` is archived as ``.../R1?.fq`` but the
catalogue, reading the URL, records ``.../R1``; ``%2e%2e`` is ``..`` to whatever unquotes a
URL; a CPR number in an S3 bucket's name or a URL's query reached the catalogue's timeline
(which keeps each event's data as consumed).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from shared.events import ArchiveUrl, Label, TypedText
from shared.paths import file_name_problem, hidden_characters

HIDDEN = [
    "\u202e",
    "\u202d",
    "\u2066",
    "\u200b",
    "\u200f",
    "\u009b",
    "\u0085",
    "\u2028",
    "\u2029",
    "\ufeff",
    "\ue000",
]


def refusal(adapter: TypeAdapter[str], value: str) -> str:
    with pytest.raises(ValidationError) as caught:
        adapter.validate_python(value)
    return str(caught.value.errors()[0]["type"])


@pytest.mark.parametrize("char", HIDDEN)
def test_typed_text_holds_no_hidden_character(char: str) -> None:
    assert refusal(TypeAdapter(TypedText), f"Klinisk Genetik{char}Aarhus") == "unsafe_id"


def test_a_cpr_number_in_typed_text_is_refused_as_such_even_with_a_hidden_character() -> None:
    assert refusal(TypeAdapter(TypedText), "Genetik 120385\u200b-1234\u202e") == "direct_identifier"


def test_plain_danish_typed_text_is_taken() -> None:
    assert (
        TypeAdapter(TypedText).validate_python("Klinisk Genetisk Afd., Aarhus Universitetshospital — Ø") != ""
    )


@pytest.mark.parametrize("char", HIDDEN)
def test_a_file_name_holds_no_hidden_character(char: str) -> None:
    assert file_name_problem(f"R1{char}.fastq.gz") is not None


@pytest.mark.parametrize(
    "name", ["R1?.fq", "R1#2.fq", "R1%2f..%2f.fq", "50%.fq", "．．", "a／b.fq", "a＼b", "ｃ：ｘ", "．hidden"]
)
def test_a_file_name_holds_nothing_that_changes_its_url_or_reads_as_a_separator(name: str) -> None:
    assert file_name_problem(name) is not None


@pytest.mark.parametrize(
    "url",
    [
        "file:///store/%2e%2e/etc/passwd",
        "s3://bucket/store/%2E%2E/y",
        "s3://bucket/store/a%2fb",
        "s3://bucket/store/a%5C..%5Cb",
        "file:///store/x\u202e.fq",
        "s3://bucket/x\u0085y",
    ],
)
def test_an_archive_url_has_no_escaped_separator_or_hidden_character(url: str) -> None:
    assert refusal(TypeAdapter(ArchiveUrl), url) == "unsafe_id"


@pytest.mark.parametrize(
    "url",
    [
        "s3://120385-1234/store/x.fq",
        "file://120385-1234/store/x.fq",
        "file:///store/x.fq?120385-1234",
        "file:///store/x.fq#12.03.85-1234",
    ],
)
def test_a_cpr_number_anywhere_in_an_archive_url_is_refused_as_such(url: str) -> None:
    assert refusal(TypeAdapter(ArchiveUrl), url) == "direct_identifier"


@given(st.text(min_size=1, max_size=20))
def test_a_name_with_any_hidden_character_is_refused(text: str) -> None:
    if hidden_characters(text):
        assert file_name_problem(text) is not None
    elif file_name_problem(text) is None:
        assert not hidden_characters(text) and not {"?", "#", "%", "/", "\\", ":"} & set(text)


@pytest.mark.parametrize("value", ["120385-1234", "cram 12.03.85 1234"])
def test_a_cpr_number_in_a_vocabulary_word_of_an_event_is_refused(value: str) -> None:
    """A file's detected type, an output's kind and the reference profile reach the
    catalogue as they come; a compromised validator or harmoniser chooses them."""
    assert refusal(TypeAdapter(Label), value) == "direct_identifier"
    assert refusal(TypeAdapter(Label), "x" * 129) == "string_too_long"
