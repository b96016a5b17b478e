"""Submission state in SQLite through Alembic: it survives a restart of the receiver."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import update

from services.receiver.metadata import parse_submission
from services.receiver.state import IdempotencyKeyReused, SubmissionStore, request_digest, submissions
from shared.events import FileRole, StoredFile
from shared.storage import MultipartUpload, UploadedPart
from tests.ids import issued_id

META = parse_submission(
    {
        "region": "syddanmark",
        "department": "OUH",
        "sample_id": "S-7",
        "patient_id": "P-7",
        "analysis_type": "WES",
        "files": [
            {"name": "R1.fastq.gz", "role": "raw_reads"},
            {"name": "x.cram", "role": "clinical_output"},
        ],
    }
)


def stored(name: str, sha: str = "b" * 64, url: str = "file:///a/R1") -> StoredFile:
    return StoredFile(name=name, role=FileRole.RAW_READS, url=url, size=5, sha256=sha, md5="c" * 32)


def test_state_survives_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'receiver.db'}"
    store = SubmissionStore(url)
    state, created = store.create("sub1", META, "syddanmark", None, "00-" + "1" * 32 + "-" + "2" * 16 + "-01")
    assert created and not any(f.complete for f in state.files)
    store.complete_file("sub1", stored("R1.fastq.gz"))
    store.close()

    again = SubmissionStore(url)  # migrations run again: a no-op
    reopened = again.get("sub1")
    assert reopened is not None
    r1, cram = reopened.file("R1.fastq.gz"), reopened.file("x.cram")
    assert r1 is not None and r1.complete and r1.sha256 == "b" * 64
    assert cram is not None and not cram.complete
    assert reopened.traceparent is not None and reopened.created_at.tzinfo is not None


def test_idempotency_key_returns_the_first_submission(tmp_path: Path) -> None:
    store = SubmissionStore(f"sqlite:///{tmp_path / 'r.db'}")
    first, created = store.create("a", META, "syddanmark", "key-1", None)
    second, created_again = store.create("b", META, "syddanmark", "key-1", None)
    assert created and not created_again
    assert second.submission_id == first.submission_id == "a"
    third, _ = store.create("c", META, "ngc", "key-1", None)  # keys are per token holder
    assert third.submission_id == "c"


def test_copy_in_sample_finds_identical_bytes_of_the_same_sample_only(tmp_path: Path) -> None:
    store = SubmissionStore(f"sqlite:///{tmp_path / 'r.db'}")
    store.create("a", META, "syddanmark", None, None)
    store.complete_file("a", stored("R1.fastq.gz", sha="d" * 64, url="file:///store/a/R1"))
    found = store.copy_in_sample("syddanmark", "S-7", "d" * 64)
    assert found is not None and found.url == "file:///store/a/R1" and found.md5 == "c" * 32
    assert store.copy_in_sample("syddanmark", "S-8", "d" * 64) is None
    assert store.copy_in_sample("hovedstaden", "S-7", "d" * 64) is None
    assert store.copy_in_sample("syddanmark", "S-7", "e" * 64) is None


def test_seal_keeps_its_first_time_and_tracks_emission(tmp_path: Path) -> None:
    store = SubmissionStore(f"sqlite:///{tmp_path / 'r.db'}")
    store.create(issued_id("a"), META, "syddanmark", None, None)
    for name in ("R1.fastq.gz", "x.cram"):
        store.complete_file(issued_id("a"), stored(name))
    first = store.seal(issued_id("a"), "event-1")
    second = store.seal(issued_id("a"), "event-1")
    assert first.sealed_at is not None and first.sealed_at == second.sealed_at
    assert first.sealed_at.tzinfo is not None
    assert store.sealed_not_emitted() == [issued_id("a")]
    store.mark_emitted(issued_id("a"))
    assert store.sealed_not_emitted() == []
    submission = first.submission()
    assert submission.received_at == first.sealed_at
    assert [f.stored().name for f in first.files] == ["R1.fastq.gz", "x.cram"]


def test_an_idempotency_key_reused_with_other_metadata_is_refused(tmp_path: Path) -> None:
    store = SubmissionStore(f"sqlite:///{tmp_path / 'r.db'}")
    first, _ = store.create("a", META, "syddanmark", "key-1", None)
    same = parse_submission(json.loads(json.dumps(META.model_dump(mode="json"), indent=2)))
    assert store.create("b", same, "syddanmark", "key-1", None) == (first, False)
    for other in (
        META.model_copy(update={"department": "Vejle"}),
        META.model_copy(update={"files": META.files[:1]}),
        META.model_copy(update={"files": list(reversed(META.files))}),
    ):
        with pytest.raises(IdempotencyKeyReused):
            store.create("c", other, "syddanmark", "key-1", None)
    assert store.get("c") is None
    assert store.create("d", META.model_copy(update={"department": "Vejle"}), "ngc", "key-1", None)[1]
    store.close()


def test_a_row_from_before_the_hash_still_answers_its_key(tmp_path: Path) -> None:
    """Migration 0002 adds the hash; rows opened before it have none and keep their replay."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    store = SubmissionStore(url)
    first, _ = store.create("a", META, "syddanmark", "key-old", None)
    with store.engine.begin() as conn:
        conn.execute(update(submissions).values(request_sha256=None))
    assert (
        store.create("b", META.model_copy(update={"department": "Vejle"}), "syddanmark", "key-old", None)[0]
        == first
    )
    assert request_digest(META) != request_digest(META.model_copy(update={"department": "Vejle"}))
    store.close()


def test_a_database_at_0001_is_migrated_and_keeps_its_submissions(tmp_path: Path) -> None:
    from alembic import command
    from sqlalchemy import insert, inspect

    from services.receiver.state import MIGRATIONS
    from shared.database import alembic_config, make_engine

    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url, MIGRATIONS, "receiver"), "0001")
    engine = make_engine(url)
    assert "request_sha256" not in {c["name"] for c in inspect(engine).get_columns("receiver_submissions")}
    row = {
        "submission_id": "old",
        "region": "syddanmark",
        "department": "OUH",
        "sample_id": "S-7",
        "patient_id": "P-7",
        "analysis_type": "WES",
        "platform": "ILLUMINA",
        "created_at": datetime(2026, 11, 30, tzinfo=UTC),
        "created_by": "syddanmark",
        "idempotency_key": "key-before",
    }
    with engine.begin() as conn:
        conn.execute(insert(submissions).values(**row))
    engine.dispose()
    store = SubmissionStore(url)
    assert store.create("new", META, "syddanmark", "key-before", None)[0].submission_id == "old"
    store.close()


def test_an_s3_upload_in_transit_keeps_its_parts_in_order_until_it_ends(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'receiver.db'}"
    store = SubmissionStore(url)
    sid = issued_id("uploads")
    store.create(sid, META, "syddanmark", None, None)
    assert store.upload_in_transit(sid, "R1.fastq.gz") is None
    store.upload_started(sid, "R1.fastq.gz", "s3://a/R1", "up-1")
    store.part_stored("up-1", UploadedPart(2, 5, "e2"))
    store.part_stored("up-1", UploadedPart(1, 7, "e1"))
    store.part_stored("up-1", UploadedPart(2, 6, "e2b"))  # sent again after a crash: replaced
    store.close()

    again = SubmissionStore(url)  # a restart, or another replica
    upload = again.upload_in_transit(sid, "R1.fastq.gz")
    assert upload == MultipartUpload(
        "s3://a/R1", "up-1", (UploadedPart(1, 7, "e1"), UploadedPart(2, 6, "e2b"))
    )
    assert upload.size == 13
    assert again.upload_in_transit(sid, "x.cram") is None

    again.upload_started(sid, "R1.fastq.gz", "s3://a/R1", "up-2")  # started over: the old one is gone
    assert again.upload_in_transit(sid, "R1.fastq.gz") == MultipartUpload("s3://a/R1", "up-2")
    again.upload_ended(sid, "R1.fastq.gz")
    assert again.upload_in_transit(sid, "R1.fastq.gz") is None
