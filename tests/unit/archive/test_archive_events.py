"""tier-moved and file-staged hold their meaning, and the archive learns only bodies in the archive."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from services.archive.learning import arrivals
from shared.envelope import RefusedEvent
from shared.events import FileReceived, FileStaged, TierMoved

MOMENT = datetime(2026, 6, 1, tzinfo=UTC)
SHA = "a" * 64


def moved(**change: Any) -> TierMoved:
    fields: dict[str, Any] = {
        "region": "hovedstaden",
        "sample_id": "S1",
        "path": "hovedstaden/S1/abc/R1.fastq.gz",
        "source": "hot",
        "target": "warm",
        "sha256": SHA,
        "moved_at": MOMENT,
    }
    return TierMoved.model_validate(fields | change)


def test_a_move_names_a_body_of_its_own_sample_and_another_tier() -> None:
    assert moved().key() == "hovedstaden/S1"
    with pytest.raises(ValidationError, match="inconsistent_event"):
        moved(path="sjaelland/S1/R1.fastq.gz")
    with pytest.raises(ValidationError, match="inconsistent_event"):
        moved(target="hot")
    with pytest.raises(ValidationError, match="unsafe_id"):
        moved(path="hovedstaden/S1/../S2/R1.fastq.gz")
    # a harmoniser output is filed by submission: the archive, which knows its sample, vouches
    assert moved(path="harmonised/abc/preprocessing/S1.md.cram").key() == "hovedstaden/S1"


def test_a_staged_body_is_pinned_until_after_its_staging() -> None:
    staged = {
        "region": "hovedstaden",
        "sample_id": "S1",
        "path": "hovedstaden/S1/abc/R1.fastq.gz",
        "recall_id": "0" * 32,
        "tier": "cold",
        "staged_at": MOMENT,
        "pinned_until": MOMENT + timedelta(hours=72),
    }
    assert FileStaged.model_validate(staged).tier == "cold"
    with pytest.raises(ValidationError, match="inconsistent_event"):
        FileStaged.model_validate(staged | {"pinned_until": MOMENT})


def received(url: str) -> FileReceived:
    return FileReceived.model_validate(
        {
            "submission": {
                "submission_id": "0" * 32,
                "region": "hovedstaden",
                "department": "Rigshospitalet",
                "sample_id": "S1",
                "patient_id": "P1",
                "analysis_type": "WGS",
                "platform": "ILLUMINA",
                "received_at": MOMENT,
            },
            "files": [
                {
                    "name": "R1.fastq.gz",
                    "role": "raw_reads",
                    "url": url,
                    "size": 10,
                    "sha256": SHA,
                    "md5": "b" * 32,
                }
            ],
        }
    )


def test_the_archive_learns_received_bodies_by_their_path_under_the_archive_and_refuses_others() -> None:
    store = "file:///srv/store"
    [arrival] = arrivals(received(f"{store}/hovedstaden/S1/abc/R1.fastq.gz"), store)
    assert (arrival.path, arrival.sample, arrival.kind, arrival.size) == (
        "hovedstaden/S1/abc/R1.fastq.gz",
        "hovedstaden/S1",
        "raw",
        10,
    )
    with pytest.raises(RefusedEvent, match="not in the archive"):
        arrivals(received("file:///elsewhere/hovedstaden/S1/R1.fastq.gz"), store)
