"""S3 uploads in transit as one multipart upload: parts, cuts, restarts and abandons on moto.

The receiver sends parts of 5 MiB (S3's smallest, ``S3_PART_SIZE``), so a test file of a few
tens of MiB has more parts than one server-side copy would have needed: the mechanism that
lets a file of any size resume, without UploadPartCopy's 5 GiB limit (moto enforces none).
"""

from __future__ import annotations

import http.client
import os
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from shared.encryption import body_size, in_whole_segments
from tests.integration.receiver.conftest import S3_PART_SIZE, TOKENS, Receiver, events_of, metadata
from tests.integration.receiver.test_receiver_upload import check_event, digests
from tests.support import wait_for

PART = S3_PART_SIZE
CIPHER_PART = body_size(PART)
"""A part as S3 holds it: 5 MiB of plaintext is 80 whole segments, 28 bytes more each."""
assert in_whole_segments(PART) == CIPHER_PART


def hang_up_after(receiver: Receiver, path: str, offset: int, rest: bytes, sent: int) -> None:
    """PUT ``rest`` from ``offset``, announcing all of it, and go away after ``sent`` bytes."""
    conn = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=60)
    try:
        conn.putrequest("PUT", path)
        conn.putheader("Authorization", f"Bearer {TOKENS['hovedstaden']}")
        conn.putheader("Upload-Offset", str(offset))
        conn.putheader("Content-Length", str(len(rest)))
        conn.endheaders()
        for i in range(0, sent, 1 << 20):
            conn.send(rest[i : min(i + (1 << 20), sent)])
    finally:
        conn.close()


def offset_of(receiver: Receiver, path: str) -> int:
    head = receiver.call("HEAD", path)
    assert head.status_code == 200, head.text
    return int(head.headers["Upload-Offset"])


def uploads_in_transit(s3: Any, sid: str) -> list[dict[str, Any]]:
    """S3's unfinished multipart uploads of the submission's files (where they will complete)."""
    listed = s3.list_multipart_uploads(Bucket="archive", Prefix="genomes/")
    return [u for u in listed.get("Uploads", []) if f"/{sid}/" in u["Key"]]


def parts_of(s3: Any, upload: dict[str, Any]) -> list[tuple[int, int]]:
    listed = s3.list_parts(Bucket="archive", Key=upload["Key"], UploadId=upload["UploadId"])
    return [(p["PartNumber"], p["Size"]) for p in listed.get("Parts", [])]


def test_s3_upload_resumes_by_parts_across_a_cut_and_a_restart(
    s3_receiver: Receiver, s3_endpoint: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    data = os.urandom(4 * PART + 3 * (1 << 20) + 12_345)  # four whole parts and a short last one
    reads = tmp_path / "R1.fastq.gz"
    reads.write_bytes(data)
    total = len(data)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    created = s3_receiver.call("POST", "/v1/submissions", json=metadata("S-PARTS", ["R1.fastq.gz"]))
    sid = created.json()["submission_id"]
    path = f"/v1/submissions/{sid}/files/R1.fastq.gz"

    # A piece past one part boundary: the whole part is kept, the tail beyond it is not.
    piece = s3_receiver.call(
        "PUT",
        path,
        data=data[: PART + 2_000_000],
        headers={"Content-Range": f"bytes 0-{PART + 1_999_999}/{total}"},
    )
    assert piece.status_code == 202, piece.text
    assert piece.json()["arrived"] == PART and piece.headers["Upload-Offset"] == str(PART)
    assert offset_of(s3_receiver, path) == PART
    (upload,) = uploads_in_transit(s3, sid)
    assert parts_of(s3, upload) == [(1, CIPHER_PART)]

    # A PUT cut mid-part: its whole part stays, its incomplete tail is dropped.
    hang_up_after(s3_receiver, path, PART, data[PART:], PART + 3_000_000)
    wait_for(lambda: offset_of(s3_receiver, path) == 2 * PART, what="the cut PUT's whole part")
    assert parts_of(s3, upload) == [(1, CIPHER_PART), (2, CIPHER_PART)]

    # An offset other than the parts' sum is refused with the one to resume from.
    wrong = s3_receiver.call(
        "PUT", path, data=data[2 * PART + 10 :], headers={"Upload-Offset": str(2 * PART + 10)}
    )
    assert wrong.status_code == 409 and wrong.headers["Upload-Offset"] == str(2 * PART)

    # The receiver restarts: the upload and its parts come back from its database.
    s3_receiver.restart()
    assert offset_of(s3_receiver, path) == 2 * PART
    again = s3_receiver.call(
        "PUT",
        path,
        data=data[2 * PART : 3 * PART + 1],
        headers={"Content-Range": f"bytes {2 * PART}-{3 * PART}/{total}"},
    )
    assert again.status_code == 202 and again.json()["arrived"] == 3 * PART
    assert [u["UploadId"] for u in uploads_in_transit(s3, sid)] == [upload["UploadId"]]
    assert parts_of(s3, upload) == [
        (1, CIPHER_PART),
        (2, CIPHER_PART),
        (3, CIPHER_PART),
    ]  # the next part number, not a new upload

    last = s3_receiver.call("PUT", path, data=data[3 * PART :], headers={"Upload-Offset": str(3 * PART)})
    assert last.status_code == 200, last.text
    size, sha256, md5 = digests(reads)
    assert (last.json()["size"], last.json()["sha256"], last.json()["md5"]) == (size, sha256, md5)
    assert uploads_in_transit(s3, sid) == []
    # Completed where it belongs, so nothing waits under .incoming to be copied.
    assert s3.list_objects_v2(Bucket="archive", Prefix=f"genomes/.incoming/{sid}/").get("KeyCount", 0) == 0

    # The same bytes again, whole: sent to .incoming, never over the complete file.
    repeat = s3_receiver.call("PUT", path, data=data)
    assert repeat.status_code == 200 and repeat.json()["deduplicated"] is True, repeat.text
    assert uploads_in_transit(s3, sid) == []

    sealed = s3_receiver.call("POST", f"/v1/submissions/{sid}/seal")
    assert sealed.status_code == 200, sealed.text
    (record,) = events_of(kafka_bootstrap, sid)
    (stored,) = check_event(record, sid, {"R1.fastq.gz": reads}).files
    key = stored.url[len("s3://archive/") :]
    assert s3_receiver.archived(stored.url, stored.size) == data
    assert s3.head_object(Bucket="archive", Key=key, PartNumber=1)["PartsCount"] == 5
    assert s3.list_objects_v2(Bucket="archive", Prefix=f"genomes/.incoming/{sid}/").get("KeyCount", 0) == 0


def test_s3_upload_started_over_aborts_the_abandoned_multipart_upload(
    s3_receiver: Receiver, s3_endpoint: str, tmp_path: Path
) -> None:
    data = os.urandom(3 * PART + 1_000)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    created = s3_receiver.call("POST", "/v1/submissions", json=metadata("S-ABORT", ["R1.fastq.gz"]))
    sid = created.json()["submission_id"]
    path = f"/v1/submissions/{sid}/files/R1.fastq.gz"

    hang_up_after(s3_receiver, path, 0, data, 2 * PART + 100)
    wait_for(lambda: offset_of(s3_receiver, path) == 2 * PART, what="two whole parts")
    (abandoned,) = uploads_in_transit(s3, sid)

    whole = s3_receiver.call("PUT", path, data=data)  # no offset: the file starts over
    assert whole.status_code == 200, whole.text
    assert whole.json()["size"] == len(data)
    assert uploads_in_transit(s3, sid) == []
    with pytest.raises(ClientError) as gone:  # aborted: S3 freed its parts
        s3.list_parts(Bucket="archive", Key=abandoned["Key"], UploadId=abandoned["UploadId"])
    assert gone.value.response["Error"]["Code"] == "NoSuchUpload"


def test_s3_upload_smaller_than_a_part_is_one_object(s3_receiver: Receiver, s3_endpoint: str) -> None:
    data = os.urandom(PART - 1)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    created = s3_receiver.call(
        "POST", "/v1/submissions", json=metadata("S-SMALL", ["R1.fastq.gz", "R2.fastq.gz"])
    )
    sid = created.json()["submission_id"]
    # Less than a part, in one PUT: no multipart upload is ever started.
    cut = s3_receiver.call(
        "PUT",
        f"/v1/submissions/{sid}/files/R1.fastq.gz",
        data=data[:1000],
        headers={"Content-Range": f"bytes 0-999/{len(data)}"},
    )
    assert cut.status_code == 202 and cut.json()["arrived"] == 0
    assert uploads_in_transit(s3, sid) == []
    whole = s3_receiver.call("PUT", f"/v1/submissions/{sid}/files/R1.fastq.gz", data=data)
    assert whole.status_code == 200 and whole.json()["size"] == len(data), whole.text
    empty = s3_receiver.call("PUT", f"/v1/submissions/{sid}/files/R2.fastq.gz", data=b"")
    assert empty.status_code == 200 and empty.json()["size"] == 0, empty.text
