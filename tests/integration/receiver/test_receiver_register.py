"""`register` reads only files really inside the region's own inbox: links and climbs refused."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from shared.encryption import write_key_pair
from tests.integration.receiver.conftest import Receiver, metadata
from tests.support import crypt4gh_encrypt


def inboxes(receiver: Receiver) -> tuple[Path, Path]:
    """The hovedstaden inbox the receiver reads for the test's region, and sjaelland's beside it."""
    mine = Path(receiver.inbox[len("file://") :])
    return mine, mine.parent / "sjaelland"


def open_submission(receiver: Receiver, sample: str) -> str:
    created = receiver.call("POST", "/v1/submissions", json=metadata(sample, ["R2.fastq.gz"]))
    assert created.status_code == 201, created.text
    return str(created.json()["submission_id"])


def register(receiver: Receiver, sid: str, url: str) -> tuple[int, dict[str, Any]]:
    answer = receiver.call(
        "POST", f"/v1/submissions/{sid}/register", json={"files": [{"name": "R2.fastq.gz", "url": url}]}
    )
    return answer.status_code, answer.json()


@pytest.mark.parametrize(
    ("link", "target"),
    [
        ("passwd.fastq.gz", "/etc/passwd"),
        ("neighbour.fastq.gz", "{theirs}/R2.fastq.gz"),
        ("etc/passwd", "/etc"),  # a linked directory: the file's name looks innocent
        ("theirs/R2.fastq.gz", "{theirs}"),
    ],
)
def test_a_link_out_of_the_inbox_is_refused(file_receiver: Receiver, link: str, target: str) -> None:
    mine, theirs = inboxes(file_receiver)
    (theirs / "R2.fastq.gz").write_bytes(b"sjaelland's reads")
    first = link.split("/")[0]
    linked = mine / first
    if not linked.is_symlink():
        linked.symlink_to(target.format(theirs=theirs), target_is_directory="/" in link)
    sid = open_submission(file_receiver, f"S-LINK-{abs(hash(link)) % 10000}")
    status, body = register(file_receiver, sid, f"{file_receiver.inbox}/{link}")
    assert status == 422, body
    assert [p["field"] for p in body["problems"]] == ["files[0].url"]
    assert "outside the region's inbox" in body["problems"][0]["message"]
    shown = file_receiver.call("GET", f"/v1/submissions/{sid}").json()
    assert shown["files"][0]["complete"] is False and shown["files"][0]["arrived"] == 0
    assert file_receiver.call("POST", f"/v1/submissions/{sid}/seal").status_code == 409


@pytest.mark.parametrize(
    "tail",
    ["../sjaelland/R2.fastq.gz", "run/../../sjaelland/R2.fastq.gz", "%2e%2e/sjaelland/R2.fastq.gz"],
)
def test_a_climb_out_of_the_inbox_is_refused(file_receiver: Receiver, tail: str) -> None:
    _, theirs = inboxes(file_receiver)
    (theirs / "R2.fastq.gz").write_bytes(b"sjaelland's reads")
    sid = open_submission(file_receiver, "S-CLIMB")
    status, body = register(file_receiver, sid, f"{file_receiver.inbox}/{tail}")
    assert status == 422, body
    assert [p["field"] for p in body["problems"]] == ["files[0].url"]


def test_a_real_file_in_the_inbox_still_registers(file_receiver: Receiver) -> None:
    mine, _ = inboxes(file_receiver)
    (mine / "run-9").mkdir(exist_ok=True)
    data = b"hovedstaden's own reads" * 1000
    (mine / "run-9" / "R2.fastq.gz").write_bytes(data)
    sid = open_submission(file_receiver, "S-REAL")
    status, body = register(file_receiver, sid, f"{file_receiver.inbox}/run-9/R2.fastq.gz")
    assert status == 200, body
    (registered,) = body["files"]
    assert registered["sha256"] == hashlib.sha256(data).hexdigest()


def test_a_file_encrypted_to_ngcs_key_is_decrypted_checked_and_stored_under_a_fresh_key(
    file_receiver: Receiver, genomhub_home: Path, tmp_path: Path
) -> None:
    mine, _ = inboxes(file_receiver)
    data = os.urandom(300_000)
    encrypted = crypt4gh_encrypt(data, genomhub_home / "keys" / "archive.pub")
    (mine / "R2.fastq.gz.c4gh").write_bytes(encrypted)
    declared = metadata("S-C4GH", [])
    declared["files"] = [
        {"name": "R2.fastq.gz", "role": "raw_reads", "sha256": hashlib.sha256(data).hexdigest()}
    ]
    created = file_receiver.call("POST", "/v1/submissions", json=declared)
    assert created.status_code == 201, created.text
    sid = created.json()["submission_id"]
    status, body = register(file_receiver, sid, f"{file_receiver.inbox}/R2.fastq.gz.c4gh")
    assert status == 200, body
    (registered,) = body["files"]
    assert (registered["size"], registered["md5"]) == (len(data), hashlib.md5(data).hexdigest())
    assert file_receiver.archived(registered["url"], registered["size"]) == data
    assert not encrypted.startswith(file_receiver.headers.read(registered["url"]))  # its own data key

    # Declared digests are checked against the plaintext: other bytes under the same name fail.
    other = metadata("S-C4GH-2", [])
    other["files"] = [
        {"name": "R2.fastq.gz", "role": "raw_reads", "sha256": hashlib.sha256(b"x").hexdigest()}
    ]
    sid = file_receiver.call("POST", "/v1/submissions", json=other).json()["submission_id"]
    status, body = register(file_receiver, sid, f"{file_receiver.inbox}/R2.fastq.gz.c4gh")
    assert status == 422 and body["problems"][0]["field"] == "sha256", body


def test_a_file_encrypted_to_another_key_is_refused_with_the_reason(
    file_receiver: Receiver, tmp_path: Path
) -> None:
    mine, _ = inboxes(file_receiver)
    theirs = write_key_pair(tmp_path / "theirs", "not NGC's")[1]
    (mine / "R2.other-key.c4gh").write_bytes(crypt4gh_encrypt(b"reads" * 1000, theirs))
    sid = open_submission(file_receiver, "S-C4GH-OTHER")
    status, body = register(file_receiver, sid, f"{file_receiver.inbox}/R2.other-key.c4gh")
    assert status == 422, body
    (problem,) = body["problems"]
    assert (problem["field"], problem["code"]) == ("files[0].url", "not_decryptable")
    assert "encrypted to another key" in problem["message"]
    shown = file_receiver.call("GET", f"/v1/submissions/{sid}").json()
    assert shown["files"][0]["complete"] is False
