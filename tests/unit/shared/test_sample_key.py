"""A sample's record key is its region and its pseudonym, and splits back into exactly those."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.events import SAMPLE_KEY_SEPARATOR, FileReceived, Region, Submission, sample_key
from tests.ids import issued_id


def submission(region: Region, sample_id: str) -> Submission:
    return Submission(
        submission_id=issued_id("sub-1"),
        region=region,
        department="OUH",
        sample_id=sample_id,
        patient_id="P-1",
        analysis_type="WGS",
        platform="ILLUMINA",
        received_at=datetime(2026, 1, 31, 23, 30, tzinfo=UTC),
    )


def received(region: Region, sample_id: str) -> FileReceived:
    return FileReceived.model_validate(
        {
            "submission": submission(region, sample_id).model_dump(),
            "files": [
                {
                    "name": "R1.fastq.gz",
                    "role": "raw_reads",
                    "url": "file:///archive/R1.fastq.gz",
                    "size": 1,
                    "sha256": "0" * 64,
                    "md5": "0" * 32,
                }
            ],
        }
    )


def test_the_key_of_a_submission_event_is_region_slash_pseudonym() -> None:
    assert received(Region.HOVEDSTADEN, "S1").key() == "hovedstaden/S1"
    assert received(Region.SYDDANMARK, "S1").key() == "syddanmark/S1"


@given(st.sampled_from(list(Region)), st.sampled_from(list(Region)), st.text(min_size=1, max_size=130))
def test_two_samples_never_share_a_key_and_a_key_splits_back(
    first: Region, second: Region, text: str
) -> None:
    """Whatever a pseudonym may be, it never holds the separator, so the key is unambiguous."""
    try:
        sub = submission(first, text)
    except ValidationError:
        return  # not a pseudonym: no event carries it
    assert SAMPLE_KEY_SEPARATOR not in sub.sample_id and SAMPLE_KEY_SEPARATOR not in first.value
    key = received(first, sub.sample_id).key()
    assert key.split(SAMPLE_KEY_SEPARATOR) == [first.value, sub.sample_id]
    assert (key == sample_key(second, sub.sample_id)) is (first is second)


@given(st.from_regex(r"[A-Za-z0-9._-]{1,128}", fullmatch=True))
def test_every_pseudonym_makes_a_key_of_its_region(sample_id: str) -> None:
    for region in Region:
        try:
            sub = submission(region, sample_id)
        except ValidationError:
            return
        assert sample_key(region, sub.sample_id).partition(SAMPLE_KEY_SEPARATOR) == (
            region.value,
            SAMPLE_KEY_SEPARATOR,
            sample_id,
        )
