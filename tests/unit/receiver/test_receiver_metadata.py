"""Submission metadata: each refusal names its field and never echoes a CPR number."""

from __future__ import annotations

from typing import Any

import pytest

from services.receiver.metadata import (
    MetadataError,
    file_name_problem,
    inbox_problem,
    parse_registration,
    parse_submission,
)


def payload(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "region": "hovedstaden",
        "department": "Rigshospitalet",
        "sample_id": "S-0001",
        "patient_id": "P-0001",
        "analysis_type": "WGS",
        "platform": "ILLUMINA",
        "files": [
            {"name": "S-0001_R1.fastq.gz", "role": "raw_reads"},
            {"name": "S-0001.cram", "role": "clinical_output", "sha256": "a" * 64},
        ],
    }
    return base | changes


def refused(data: Any) -> MetadataError:
    with pytest.raises(MetadataError) as caught:
        parse_submission(data)
    return caught.value


def test_accepts_good_metadata() -> None:
    sub = parse_submission(payload())
    assert sub.region.value == "hovedstaden"
    assert [f.name for f in sub.files] == ["S-0001_R1.fastq.gz", "S-0001.cram"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"region": "jylland"}, "region"),
        ({"analysis_type": "RNA"}, "analysis_type"),
        ({"sample_id": "has space"}, "sample_id"),
        ({"files": []}, "files"),
        ({"files": [{"name": "a", "role": "other"}]}, "files[0].role"),
        ({"files": [{"name": "a", "role": "raw_reads", "sha256": "XYZ"}]}, "files[0].sha256"),
        ({"extra": 1}, "extra"),
    ],
)
def test_invalid_fields_are_named(changes: dict[str, Any], field: str) -> None:
    error = refused(payload(**changes))
    assert (error.code, error.field) == ("invalid", field)
    assert error.title == "invalid metadata"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"patient_id": "0101901234"}, "patient_id"),
        ({"sample_id": "S-010190-1234"}, "sample_id"),  # would also fail the pseudonym pattern
        ({"department": "Klinisk genetik 2902004123"}, "department"),
        ({"files": [{"name": "310175-1234_R1.fastq.gz", "role": "raw_reads"}]}, "files[0].name"),
    ],
)
def test_cpr_numbers_are_direct_identifiers(changes: dict[str, Any], field: str) -> None:
    error = refused(payload(**changes))
    assert (error.code, error.field) == ("direct_identifier", field)
    assert error.title == "direct identifier"
    assert all(
        v not in f"{error.title} {error}" for v in ("0101901234", "010190-1234", "2902004123", "310175-1234")
    )


def test_ten_digits_without_a_valid_date_are_fine() -> None:
    assert (
        parse_submission(payload(patient_id="3213991234", sample_id="2902001234")).patient_id == "3213991234"
    )


@pytest.mark.parametrize(
    "name",
    [
        "../etc/passwd",
        "..",
        ".",
        "/etc/passwd",
        "a/b",
        "a\\b",
        "C:evil",
        "a\x00b",
        "a\nb",
        "a\x7fb",
        ".hidden",
        " x",
        "a\u202eb",
    ],
)
def test_file_names_that_could_escape_or_hide_are_refused(name: str) -> None:
    assert file_name_problem(name) is not None
    error = refused(payload(files=[{"name": name, "role": "raw_reads"}]))
    assert (error.code, error.field) == ("invalid", "files[0].name")


def test_duplicate_names_are_refused() -> None:
    error = refused(payload(files=[{"name": "a", "role": "raw_reads"}, {"name": "a", "role": "raw_reads"}]))
    assert error.field == "files[1].name"


def test_body_must_be_an_object() -> None:
    assert refused([1, 2]).field == "body"


def test_inbox_urls() -> None:
    inbox = "s3://inbox/hovedstaden"
    assert inbox_problem("s3://inbox/hovedstaden/run1/R1.fastq.gz", inbox) is None
    assert inbox_problem("s3://inbox/hovedstaden-evil/R1.fastq.gz", inbox) is not None
    assert inbox_problem("s3://inbox/hovedstaden/../sjaelland/R1.fastq.gz", inbox) is not None
    assert inbox_problem("s3://inbox/hovedstaden//R1", inbox) is not None
    assert inbox_problem("file:///etc/passwd", inbox) is not None
    assert inbox_problem("s3://inbox/hovedstaden/", inbox) is not None


def test_registration_payload() -> None:
    inbox = "file:///inbox/hovedstaden"
    files = [{"name": "R1.fastq.gz", "url": f"{inbox}/R1.fastq.gz"}]
    assert parse_registration({"files": files}, inbox) == [("R1.fastq.gz", f"{inbox}/R1.fastq.gz")]
    with pytest.raises(MetadataError) as caught:
        parse_registration({"files": files}, None)
    assert caught.value.field == "region"
    with pytest.raises(MetadataError) as caught:
        parse_registration({"files": [{"name": "R1", "url": "file:///inbox/sjaelland/R1"}]}, inbox)
    assert caught.value.field == "files[0].url"


@pytest.mark.parametrize("field", ["department", "platform"])
@pytest.mark.parametrize("value", ["Rigs\nhospitalet", "Rigs\x00hospitalet", "ILLUMINA\x1b[2J"])
def test_typed_text_holds_no_control_characters(field: str, value: str) -> None:
    error = refused(payload(**{field: value}))
    assert (error.code, error.field) == ("invalid", field)


@pytest.mark.parametrize("pseudonym", [".", "..", ".x", "-x", "_x"])
@pytest.mark.parametrize("field", ["sample_id", "patient_id"])
def test_a_pseudonym_is_one_plain_path_segment(field: str, pseudonym: str) -> None:
    error = refused(payload(**{field: pseudonym}))
    assert (error.code, error.field) == ("invalid", field)


CPR_SHAPES = ["120385-1234", "1203851234", "12.03.85 1234"]


@pytest.mark.parametrize("cpr", CPR_SHAPES)
@pytest.mark.parametrize(
    "where",
    [
        lambda cpr: payload(**{cpr: "x"}),  # as a field's name
        lambda cpr: payload(files=[{"name": "a.fq", "role": "raw_reads", cpr: 1}]),
        lambda cpr: payload(sample_id=[cpr]),  # inside a value of the wrong type
        lambda cpr: payload(department={"name": cpr}),
    ],
)
def test_a_cpr_number_anywhere_in_the_body_is_refused_as_such_and_never_echoed(where: Any, cpr: str) -> None:
    error = refused(where(cpr))
    assert error.code == "direct_identifier"
    assert "1234" not in f"{error.title} {error.field} {error.message}" and "85" not in error.field


def test_a_declared_checksum_is_no_cpr_number_whatever_its_digits() -> None:
    digest = "ab" + "1203851234" + "c" * 52  # ten digits in a row that read as a date
    files = [{"name": "a.fq", "role": "raw_reads", "sha256": digest}]
    assert parse_submission(payload(files=files)).files[0].sha256 == digest


@pytest.mark.parametrize("cpr", CPR_SHAPES)
@pytest.mark.parametrize("field", ["name", "url"])
def test_a_cpr_number_in_a_registered_file_is_refused_as_such(field: str, cpr: str) -> None:
    inbox = "file:///inbox/hovedstaden"
    item = {"name": "R1.fastq.gz", "url": f"{inbox}/R1.fastq.gz"}
    item[field] = f"{cpr}.fastq.gz" if field == "name" else f"{inbox}/{cpr}/R1.fastq.gz"
    with pytest.raises(MetadataError) as caught:
        parse_registration({"files": [item]}, inbox)
    assert caught.value.code == "direct_identifier" and caught.value.field == f"files[0].{field}"
