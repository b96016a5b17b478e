"""The S3 cold tier against moto's server: archive storage classes, unreadable until restored.

moto completes a restore at once, so what waiting looks like is the folder cold tier's
(tests/unit/archive); here: the class the body is stored in, ``InvalidObjectState`` before a
recall, ``RestoreAlreadyInProgress`` taken as the recall under way, and the restore header.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from shared.storage import filesystem, use_s3_endpoint
from shared.tiers import ArchiveTiers, NeedsRecall, NotStaged, S3ColdTier, TierError, digest_of


@pytest.fixture
def tape(s3_endpoint: str) -> Iterator[S3ColdTier]:
    use_s3_endpoint(s3_endpoint)
    try:
        yield S3ColdTier(f"s3://tape/{uuid.uuid4().hex}", storage_class="DEEP_ARCHIVE", part_size=5 << 20)
    finally:
        use_s3_endpoint(None)


def test_a_body_goes_to_tape_in_its_storage_class_and_is_read_only_once_restored(
    tape: S3ColdTier, s3_endpoint: str
) -> None:
    content = bytes(range(256)) * (45 << 10)  # 11.25 MiB: three parts
    stored = tape.store("hovedstaden/S1/R1.fastq.gz.c4gh", io.BytesIO(content))
    assert stored == digest_of(io.BytesIO(content))
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    key = f"{tape.prefix}/hovedstaden/S1/R1.fastq.gz.c4gh"
    assert s3.head_object(Bucket="tape", Key=key)["StorageClass"] == "DEEP_ARCHIVE"
    with pytest.raises(ClientError, match="InvalidObjectState"):
        s3.get_object(Bucket="tape", Key=key)
    assert tape.residence("hovedstaden/S1/R1.fastq.gz.c4gh").state == "offline"
    with pytest.raises(NotStaged):
        tape.open("hovedstaden/S1/R1.fastq.gz.c4gh")

    staged = tape.recall("hovedstaden/S1/R1.fastq.gz.c4gh", pin_seconds=2 * 86400)
    assert staged.state == "staged" and staged.expires is not None
    assert 'ongoing-request="false"' in s3.head_object(Bucket="tape", Key=key)["Restore"]
    assert digest_of(tape.open("hovedstaden/S1/R1.fastq.gz.c4gh")) == stored


def test_an_empty_body_is_stored_too(tape: S3ColdTier) -> None:
    assert tape.store("r/S/empty.c4gh", io.BytesIO(b"")) == digest_of(io.BytesIO(b""))
    assert tape.exists("r/S/empty.c4gh")


def test_a_recall_of_what_tape_does_not_hold_is_refused_with_the_gateways_reason(tape: S3ColdTier) -> None:
    with pytest.raises(TierError, match="refused the recall of r/S/missing"):
        tape.recall("r/S/missing", pin_seconds=86400)


def test_an_interrupted_store_leaves_no_body_and_no_open_upload(tape: S3ColdTier, s3_endpoint: str) -> None:
    class Cut(io.BytesIO):
        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            if self.tell() >= 6 << 20:
                raise OSError("source went away")
            return super().readinto(buffer)

    with pytest.raises(OSError, match="source went away"):
        tape.store("r/S/cut.c4gh", Cut(b"x" * (8 << 20)))
    assert not tape.exists("r/S/cut.c4gh")
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    assert s3.list_multipart_uploads(Bucket="tape", Prefix=tape.prefix).get("Uploads", []) == []


def test_a_reader_finds_a_body_on_the_gateway_only_once_it_is_restored(
    tape: S3ColdTier, tmp_path: Path
) -> None:
    """The read path's locator with an s3:// cold tier: the body named by its intake URL, on
    tape NeedsRecall, restored read at its key on the gateway."""
    content = bytes(range(256)) * 64
    path = "hovedstaden/S1/R1.fastq.gz.c4gh"
    tape.store(path, io.BytesIO(content))
    tiers = ArchiveTiers((tmp_path / "store").as_uri(), (tmp_path / "warm").as_uri(), tape.url)
    intake = f"{tiers.hot}/{path}"
    with pytest.raises(NeedsRecall) as needs:
        tiers.locate(intake)
    assert (needs.value.path, needs.value.state) == (path, "offline")
    tape.recall(path, pin_seconds=86400)
    located = tiers.locate(intake)
    assert located == f"{tape.url}/{path}"
    fs, where = filesystem(located)
    with fs.open(where, "rb") as handle:
        assert handle.read() == content
