"""What the receiver refuses: missing or foreign tokens, bad metadata, CPR numbers, escapes, size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.receiver.conftest import MAX_FILE_SIZE, TOKENS, Receiver, _receiver, metadata
from tests.support import Process, genomhub


def routes(sid: str) -> list[tuple[str, str, dict[str, object]]]:
    return [
        ("GET", f"/v1/submissions/{sid}", {}),
        ("HEAD", f"/v1/submissions/{sid}/files/R1.fastq.gz", {}),
        ("PUT", f"/v1/submissions/{sid}/files/R1.fastq.gz", {"data": b"x" * 10}),
        ("POST", f"/v1/submissions/{sid}/register", {"json": {"files": []}}),
        ("POST", f"/v1/submissions/{sid}/seal", {}),
    ]


def test_authentication_matrix(file_receiver: Receiver) -> None:
    assert file_receiver.call("GET", "/healthz", holder=None).status_code == 200
    body = metadata("S-AUTH", ["R1.fastq.gz"])
    assert file_receiver.call("POST", "/v1/submissions", holder=None, json=body).status_code == 401
    bad = {"Authorization": "Bearer not-a-token"}
    assert (
        file_receiver.call("POST", "/v1/submissions", holder=None, json=body, headers=bad).status_code == 401
    )
    basic = {"Authorization": "Basic aGVsbG86d29ybGQ="}
    assert (
        file_receiver.call("POST", "/v1/submissions", holder=None, json=body, headers=basic).status_code
        == 401
    )
    foreign = file_receiver.call("POST", "/v1/submissions", holder="sjaelland", json=body)
    assert foreign.status_code == 403

    created = file_receiver.call("POST", "/v1/submissions", json=body)
    assert created.status_code == 201
    sid = created.json()["submission_id"]
    for method, path, kwargs in routes(sid):
        assert file_receiver.call(method, path, holder=None, **kwargs).status_code == 401, (method, path)
        assert file_receiver.call(method, path, holder=None, headers=bad, **kwargs).status_code == 401
        foreign_route = file_receiver.call(method, path, holder="sjaelland", **kwargs)
        unknown_route = file_receiver.call(method, path.replace(sid, "0" * 32), holder="sjaelland", **kwargs)
        assert foreign_route.status_code == unknown_route.status_code == 404, (method, path)
        assert foreign_route.content == unknown_route.content, (method, path)
    assert file_receiver.call("GET", f"/v1/submissions/{sid}", holder="ngc").status_code == 200
    assert file_receiver.call("POST", "/v1/submissions", holder="ngc", json=body).status_code == 201
    assert file_receiver.call("GET", "/v1/submissions/no-such-id").status_code == 404

    log = file_receiver.log.read_text()
    requests_logged = [
        json.loads(line[line.index("{") :]) for line in log.splitlines() if '"http request"' in line
    ]
    outcomes = {(r["holder"], r["status"]) for r in requests_logged}
    assert {
        ("-", 401),
        ("sjaelland", 403),
        ("sjaelland", 404),
        ("hovedstaden", 201),
        ("ngc", 200),
    } <= outcomes
    assert all(token not in log for token in TOKENS.values())


@pytest.mark.parametrize(
    ("changes", "field", "error"),
    [
        ({"region": "gotland"}, "region", "invalid metadata"),
        ({"analysis_type": "RNA-seq"}, "analysis_type", "invalid metadata"),
        ({"patient_id": "0101901234"}, "patient_id", "direct identifier"),
        ({"patient_id": "010190-1234"}, "patient_id", "direct identifier"),
        ({"sample_id": "S2902004321"}, "sample_id", "direct identifier"),  # 29 Feb 2000
        ({"department": "Genetik 311299-0001"}, "department", "direct identifier"),
        (
            {"files": [{"name": "1508851234_R1.fastq.gz", "role": "raw_reads"}]},
            "files[0].name",
            "direct identifier",
        ),
        ({"files": [{"name": "../../etc/passwd", "role": "raw_reads"}]}, "files[0].name", "invalid metadata"),
        ({"files": [{"name": "/etc/passwd", "role": "raw_reads"}]}, "files[0].name", "invalid metadata"),
        ({"files": [{"name": "R1\x1b[2J.fastq", "role": "raw_reads"}]}, "files[0].name", "invalid metadata"),
    ],
)
def test_bad_metadata_gets_422_naming_the_field(
    file_receiver: Receiver, changes: dict[str, object], field: str, error: str
) -> None:
    response = file_receiver.call(
        "POST", "/v1/submissions", json=metadata("S-BAD", ["R1.fastq.gz"]) | changes
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert (body["status"], body["error"], [p["field"] for p in body["problems"]]) == (422, error, [field])
    for value in changes.values():
        if isinstance(value, str) and error == "direct identifier":
            assert value not in response.text


def test_ten_digits_that_do_not_start_with_a_date_are_pseudonyms(file_receiver: Receiver) -> None:
    body = metadata("3213991234", ["2902001234_R1.fastq.gz"], patient_id="0013901234")  # no such dates
    assert file_receiver.call("POST", "/v1/submissions", json=body).status_code == 201


def test_path_traversal_in_the_url_never_escapes_the_store(file_receiver: Receiver, tmp_path: Path) -> None:
    created = file_receiver.call("POST", "/v1/submissions", json=metadata("S-TRAV", ["R1.fastq.gz"]))
    sid = created.json()["submission_id"]
    for name in ("..%2F..%2F..%2Fescaped", "%2Fetc%2Fescaped", "..", "%2E%2E", "R1%00.fastq.gz"):
        response = file_receiver.call("PUT", f"/v1/submissions/{sid}/files/{name}", data=b"payload")
        assert response.status_code in (400, 404, 422), (name, response.status_code)
    store = Path(file_receiver.store[len("file://") :])
    assert not list(store.parent.rglob("escaped"))
    undeclared = file_receiver.call("PUT", f"/v1/submissions/{sid}/files/other.fastq.gz", data=b"x")
    assert undeclared.status_code == 404


def test_size_limit_is_enforced_before_reading(file_receiver: Receiver) -> None:
    created = file_receiver.call("POST", "/v1/submissions", json=metadata("S-BIG", ["R1.fastq.gz"]))
    sid = created.json()["submission_id"]
    path = f"/v1/submissions/{sid}/files/R1.fastq.gz"
    too_big = file_receiver.call(
        "PUT", path, data=b"", headers={"Content-Range": f"bytes 0-*/{MAX_FILE_SIZE + 1}"}
    )
    assert too_big.status_code == 413
    chunked = file_receiver.call("PUT", path, data=iter([b"a", b"b"]))  # no Content-Length
    assert chunked.status_code == 411
    encoded = file_receiver.call("PUT", path, data=b"\x1f\x8b", headers={"Content-Encoding": "gzip"})
    assert encoded.status_code == 415  # a .gz is sent as it is, never decoded on the way
    bad_sha = file_receiver.call(
        "POST",
        "/v1/submissions",
        json=metadata("S-SHA", ["R1.fastq.gz"])
        | {"files": [{"name": "R1.fastq.gz", "role": "raw_reads", "sha256": "0" * 64}]},
    )
    mismatch = file_receiver.call(
        "PUT", f"/v1/submissions/{bad_sha.json()['submission_id']}/files/R1.fastq.gz", data=b"abc"
    )
    assert mismatch.status_code == 422 and mismatch.json()["error"] == "sha256 mismatch"
    assert mismatch.json()["problems"][0]["field"] == "sha256"


@pytest.mark.parametrize(
    ("setting", "value", "reason"),
    [
        ("GENOMHUB_ARCHIVE_KEY_PASSPHRASE", "not the passphrase", "GENOMHUB_ARCHIVE_KEY_PASSPHRASE is wrong"),
        ("GENOMHUB_ARCHIVE_SECRET_KEY", "/nonexistent/archive.sec", "does not exist"),
    ],
)
def test_a_receiver_without_a_usable_archive_key_does_not_start(
    kafka_bootstrap: str, tmp_path: Path, setting: str, value: str, reason: str
) -> None:
    """No byte is taken that could not be encrypted, nor an upload that could not be resumed."""
    receiver = _receiver(
        tmp_path, "keyless", (tmp_path / "store").as_uri(), (tmp_path / "inbox").as_uri(), {}
    )
    receiver.env[setting] = value
    process = Process(genomhub("run", "receiver"), receiver.log, receiver.env).start()
    try:
        assert process.wait_exit(timeout=60) != 0
    finally:
        process.stop()
    assert reason in receiver.log.read_text()
    assert not (tmp_path / "store").exists()
