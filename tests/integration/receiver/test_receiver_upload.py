"""Uploads through a real receiver process into file:// and s3:// archives, sealed into events."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import boto3
import jsonschema

from shared.encryption import SEGMENT_SIZE
from shared.envelope import decode, derive_id, normalise_headers
from shared.events import FileReceived
from tests.integration.receiver.conftest import S3_PART_SIZE, Receiver, events_of, metadata
from tests.support import genomhub

SCHEMA = json.loads(FileReceived.schema_path().read_text())


def make_file(folder: Path, name: str, size: int) -> Path:
    path = folder / name
    path.write_bytes(os.urandom(size))
    return path


def run_upload(
    receiver: Receiver, *args: str, holder: str = "hovedstaden"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*genomhub("upload", "--url", receiver.url, *args)],
        env={**os.environ, **receiver.cli_env(holder)},
        capture_output=True,
        text=True,
        timeout=180,
    )


def digests(path: Path) -> tuple[int, str, str]:
    data = path.read_bytes()
    return len(data), hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest()


def check_event(record: Any, submission_id: str, files: dict[str, Path]) -> FileReceived:
    """The record is a schema-valid file-received for ``submission_id`` describing ``files``."""
    jsonschema.Draft202012Validator(SCHEMA).validate(json.loads(record.value))
    envelope = decode(normalise_headers(record.headers), record.value, FileReceived)
    assert envelope.id == derive_id(submission_id, "receiver", FileReceived.ce_type())
    event = envelope.data
    assert event.submission.submission_id == submission_id
    assert event.submission.received_at.utcoffset() is not None
    assert {f.name: (f.size, f.sha256, f.md5) for f in event.files} == {
        n: digests(p) for n, p in files.items()
    }
    return event


def test_cli_uploads_to_file_store_and_seal_emits_one_valid_event(
    file_receiver: Receiver, kafka_bootstrap: str, tmp_path: Path
) -> None:
    r1 = make_file(tmp_path, "S-CLI_R1.fastq.gz", 9_000_000)
    r2 = make_file(tmp_path, "S-CLI_R2.fastq.gz", 5_000_001)
    cram = make_file(tmp_path, "S-CLI.cram", 70_000)
    sample = f"S-CLI-{uuid.uuid4().hex[:8]}"
    done = run_upload(
        file_receiver,
        *(
            "--region",
            "hovedstaden",
            "--sample",
            sample,
            "--patient",
            "P-1",
            "--department",
            "Rigshospitalet",
        ),
        *("--analysis", "WGS", str(r1), str(r2), "--clinical", str(cram)),
    )
    assert done.returncode == 0, done.stderr
    submission_id = done.stdout.strip().splitlines()[-1]
    assert "S-CLI_R1.fastq.gz: 100.0%" in done.stderr  # plain progress lines when not a tty

    found = events_of(kafka_bootstrap, submission_id)
    assert len(found) == 1
    event = check_event(found[0], submission_id, {p.name: p for p in (r1, r2, cram)})
    roles = {f.name: f.role.value for f in event.files}
    assert roles == {r1.name: "raw_reads", r2.name: "raw_reads", cram.name: "clinical_output"}
    for stored in event.files:
        assert stored.url.startswith(f"{file_receiver.store}/hovedstaden/{sample}/{submission_id}/")
        assert file_receiver.archived(stored.url, stored.size) == (tmp_path / stored.name).read_bytes()


def test_pieces_resume_409_and_a_repeated_seal_in_one_trace(
    file_receiver: Receiver, kafka_bootstrap: str, tmp_path: Path
) -> None:
    data = os.urandom(6_000_000)
    other = os.urandom(1000)
    created = file_receiver.call(
        "POST", "/v1/submissions", json=metadata("S-API", ["a.fastq.gz", "b.fastq.gz"])
    )
    assert created.status_code == 201, created.text
    sid, trace_id = created.json()["submission_id"], created.json()["trace_id"]
    a = f"/v1/submissions/{sid}/files/a.fastq.gz"

    piece = file_receiver.call(
        "PUT", a, data=data[:2_500_000], headers={"Content-Range": f"bytes 0-2499999/{len(data)}"}
    )
    kept = 2_500_000 // SEGMENT_SIZE * SEGMENT_SIZE  # whole segments: the answer says where to go on
    assert piece.status_code == 202 and piece.json()["arrived"] == kept
    assert piece.headers["Upload-Offset"] == str(kept)
    head = file_receiver.call("HEAD", a)
    assert (head.headers["Upload-Offset"], head.headers["Upload-Complete"]) == (str(kept), "?0")
    wrong = file_receiver.call("PUT", a, data=data[2_500_000:], headers={"Upload-Offset": "2500000"})
    assert wrong.status_code == 409 and wrong.headers["Upload-Offset"] == str(kept)
    rest = file_receiver.call("PUT", a, data=data[kept:], headers={"Upload-Offset": str(kept)})
    assert rest.status_code == 200, rest.text
    assert rest.json()["sha256"] == hashlib.sha256(data).hexdigest()
    assert file_receiver.call("HEAD", a).headers["Upload-Complete"] == "?1"

    early = file_receiver.call("POST", f"/v1/submissions/{sid}/seal")
    assert early.status_code == 409
    assert early.json()["detail"]["missing"] == ["b.fastq.gz"]
    assert not events_of(kafka_bootstrap, sid)

    assert file_receiver.call("PUT", f"/v1/submissions/{sid}/files/b.fastq.gz", data=other).status_code == 200
    first = file_receiver.call("POST", f"/v1/submissions/{sid}/seal")
    second = file_receiver.call("POST", f"/v1/submissions/{sid}/seal")
    assert first.status_code == second.status_code == 200
    assert first.json()["event_id"] == second.json()["event_id"]
    assert first.json()["received_at"] == second.json()["received_at"]
    late = file_receiver.call("PUT", f"/v1/submissions/{sid}/files/b.fastq.gz", data=other)
    assert late.status_code == 409  # sealed

    found = events_of(kafka_bootstrap, sid)
    assert len(found) == 1  # a seal is done once: the second answers the first's result
    (tmp_path / "a.fastq.gz").write_bytes(data)
    (tmp_path / "b.fastq.gz").write_bytes(other)
    check_event(found[0], sid, {"a.fastq.gz": tmp_path / "a.fastq.gz", "b.fastq.gz": tmp_path / "b.fastq.gz"})
    traceparent = dict(found[0].headers)["traceparent"].decode()
    assert traceparent.split("-")[1] == trace_id  # upload and seal are one trace


def test_byte_identical_reupload_to_the_same_sample_keeps_one_copy(
    file_receiver: Receiver, kafka_bootstrap: str, tmp_path: Path
) -> None:
    reads = make_file(tmp_path, "R1.fastq.gz", 3_000_000)
    sample = f"S-DUP-{uuid.uuid4().hex[:8]}"
    args = ("--region", "hovedstaden", "--sample", sample, "--patient", "P-2", "--department", "OUH")
    first = run_upload(file_receiver, *args, "--analysis", "WES", "--no-checksum", str(reads))
    second = run_upload(file_receiver, *args, "--analysis", "WES", "--no-checksum", str(reads))
    third = run_upload(file_receiver, *args, "--analysis", "WES", str(reads))  # declares its sha256
    assert first.returncode == second.returncode == third.returncode == 0, first.stderr + second.stderr
    assert "R1.fastq.gz: already received" in third.stderr  # nothing transferred at all
    ids = [p.stdout.strip().splitlines()[-1] for p in (first, second, third)]
    assert len(set(ids)) == 3
    urls = set()
    for sid in ids:
        (record,) = events_of(kafka_bootstrap, sid)
        urls |= {f.url for f in check_event(record, sid, {"R1.fastq.gz": reads}).files}
    assert len(urls) == 1
    copies = list(Path(file_receiver.store[len("file://") :], "hovedstaden", sample).rglob("R1.fastq.gz"))
    assert len(copies) == 1

    # Within an open submission, the same PUT twice answers the same.
    created = file_receiver.call("POST", "/v1/submissions", json=metadata(sample, ["R1.fastq.gz"]))
    path = f"/v1/submissions/{created.json()['submission_id']}/files/R1.fastq.gz"
    again = [file_receiver.call("PUT", path, data=reads.read_bytes()).json() for _ in range(2)]
    assert again[0] | {"deduplicated": True} == again[1] | {"deduplicated": True}
    assert again[0]["url"] in urls
    differs = file_receiver.call("PUT", path, data=b"other bytes")
    assert differs.status_code == 409


def test_s3_store_upload_and_register_from_inboxes(
    s3_receiver: Receiver, s3_endpoint: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    reads = make_file(tmp_path, "R1.fastq.gz", 12_000_000)  # more than one s3 multipart part
    inbox_file = make_file(tmp_path, "R2.fastq.gz", 2_000_000)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.put_object(Bucket="inbox", Key="hovedstaden/run-7/R2.fastq.gz", Body=inbox_file.read_bytes())
    s3.put_object(Bucket="inbox", Key="sjaelland/R2.fastq.gz", Body=b"not yours")

    created = s3_receiver.call(
        "POST", "/v1/submissions", json=metadata("S-S3", ["R1.fastq.gz", "R2.fastq.gz"])
    )
    sid = created.json()["submission_id"]
    path = f"/v1/submissions/{sid}/files/R1.fastq.gz"
    data = reads.read_bytes()
    # In two pieces: the first stores one whole part and drops the rest, which is sent again.
    first = s3_receiver.call(
        "PUT", path, data=data[:6_000_000], headers={"Content-Range": "bytes 0-5999999/12000000"}
    )
    assert first.status_code == 202, first.text
    assert first.json()["arrived"] == S3_PART_SIZE
    assert s3_receiver.call("HEAD", path).headers["Upload-Offset"] == str(S3_PART_SIZE)
    put = s3_receiver.call(
        "PUT", path, data=data[S3_PART_SIZE:], headers={"Upload-Offset": str(S3_PART_SIZE)}
    )
    assert put.status_code == 200, put.text
    outside = s3_receiver.call(
        "POST",
        f"/v1/submissions/{sid}/register",
        json={"files": [{"name": "R2.fastq.gz", "url": "s3://inbox/sjaelland/R2.fastq.gz"}]},
    )
    assert outside.status_code == 422 and outside.json()["problems"][0]["field"] == "files[0].url"
    registered = s3_receiver.call(
        "POST",
        f"/v1/submissions/{sid}/register",
        json={"files": [{"name": "R2.fastq.gz", "url": "s3://inbox/hovedstaden/run-7/R2.fastq.gz"}]},
    )
    assert registered.status_code == 200, registered.text
    sealed = s3_receiver.call("POST", f"/v1/submissions/{sid}/seal")
    assert sealed.status_code == 200, sealed.text

    (record,) = events_of(kafka_bootstrap, sid)
    event = check_event(record, sid, {"R1.fastq.gz": reads, "R2.fastq.gz": inbox_file})
    for stored in event.files:
        assert stored.url.startswith(f"s3://archive/genomes/hovedstaden/S-S3/{sid}/")
        assert s3_receiver.archived(stored.url, stored.size) == (tmp_path / stored.name).read_bytes()
    leftovers = s3.list_objects_v2(Bucket="archive", Prefix=f"genomes/.incoming/{sid}/").get("KeyCount", 0)
    assert leftovers == 0


def test_register_from_a_file_inbox(file_receiver: Receiver, kafka_bootstrap: str) -> None:
    inbox = Path(file_receiver.inbox[len("file://") :])
    (inbox / "batch").mkdir(exist_ok=True)
    source = make_file(inbox / "batch", "S-REG.cram", 1_500_000)
    created = file_receiver.call(
        "POST",
        "/v1/submissions",
        json=metadata("S-REG", ["S-REG.cram"])
        | {"files": [{"name": "S-REG.cram", "role": "clinical_output"}]},
    )
    sid = created.json()["submission_id"]
    url = f"{file_receiver.inbox}/batch/S-REG.cram"
    climbing = file_receiver.call(
        "POST",
        f"/v1/submissions/{sid}/register",
        json={"files": [{"name": "S-REG.cram", "url": f"{file_receiver.inbox}/../x"}]},
    )
    assert climbing.status_code == 422
    done = file_receiver.call(
        "POST", f"/v1/submissions/{sid}/register", json={"files": [{"name": "S-REG.cram", "url": url}]}
    )
    assert done.status_code == 200, done.text
    assert file_receiver.call("POST", f"/v1/submissions/{sid}/seal").status_code == 200
    (record,) = events_of(kafka_bootstrap, sid)
    check_event(record, sid, {"S-REG.cram": source})
