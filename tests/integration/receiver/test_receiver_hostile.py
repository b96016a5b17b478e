"""A hostile or careless client against a real receiver process: nothing it sends makes a
500, leaks a secret into a response or a log, repeats a seal's event, or tells one region
what another holds."""

from __future__ import annotations

import json
import threading
from typing import Any

import requests

from tests.integration.receiver.conftest import TOKENS, Receiver, events_of, metadata
from tests.support import assert_error_body, raw_http

CPR = "0703851234"  # 7 March 1985: a CPR number's shape
LONG_TOKEN = "leakcheck" + "A" * 9000


def log_lines(receiver: Receiver) -> str:
    return receiver.log.read_text(errors="replace")


def test_a_header_too_long_is_400_in_the_one_body_and_the_token_is_nowhere(file_receiver: Receiver) -> None:
    token = TOKENS["hovedstaden"]
    for request in (
        f"GET /v1/submissions/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {LONG_TOKEN}\r\n\r\n".encode(),
        f"GET /v1/submissions/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\x01\r\n\r\n".encode(),
        f"POST /v1/submissions HTTP/1.1\r\nAuthorization: Bearer {token}\r\nContent-Length: x\r\n\r\n".encode(),
    ):
        status, headers, body = raw_http(file_receiver.port, request)
        assert status == 400, body
        assert headers["content-type"].startswith("application/json")
        assert_error_body(body, 400)
        assert b"leakcheck" not in body and token.encode() not in body and b"Bearer" not in body
    log = log_lines(file_receiver)
    assert "malformed request refused" in log
    assert "leakcheck" not in log and token not in log


def test_aiohttps_own_errors_are_the_one_body(file_receiver: Receiver) -> None:
    unknown = file_receiver.call("GET", "/v1/nothing-here")
    assert unknown.status_code == 404
    assert_error_body(unknown.content, 404)
    wrong_method = file_receiver.call("DELETE", "/v1/submissions")
    assert wrong_method.status_code == 405 and "POST" in wrong_method.headers["Allow"]
    assert_error_body(wrong_method.content, 405)
    unauthorised = file_receiver.call("GET", "/v1/submissions/x", holder=None)
    assert unauthorised.status_code == 401
    assert_error_body(unauthorised.content, 401)
    too_large = file_receiver.call("POST", "/v1/submissions", data=b"{" + b" " * (2 << 20) + b"}")
    assert too_large.status_code == 413
    assert_error_body(too_large.content, 413)


def test_a_cpr_in_a_path_or_a_body_is_never_logged_nor_echoed(file_receiver: Receiver) -> None:
    created = file_receiver.call("POST", "/v1/submissions", json=metadata("S-LOGCPR", ["R1.fastq.gz"]))
    sid = created.json()["submission_id"]
    for method, path in (
        ("PUT", f"/v1/submissions/{sid}/files/{CPR}_R1.fastq.gz"),
        ("HEAD", f"/v1/submissions/{sid}/files/{CPR[:6]}-{CPR[6:]}.cram"),
        ("GET", f"/v1/submissions/{CPR}"),
        ("POST", f"/v1/{CPR}/seal"),
    ):
        answer = file_receiver.call(method, path, data=b"x" if method == "PUT" else None)
        assert 400 <= answer.status_code < 500, (method, path, answer.status_code)
        assert CPR not in answer.text and CPR[:6] not in answer.text
    refused = file_receiver.call("POST", "/v1/submissions", json=metadata("S-LOGCPR", [f"{CPR}.fastq.gz"]))
    assert refused.status_code == 422 and CPR not in refused.text
    log = log_lines(file_receiver)
    assert '"http request"' in log and sid in log
    assert CPR not in log and f"{CPR[:6]}-{CPR[6:]}" not in log


def test_no_body_makes_a_500(file_receiver: Receiver) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    for data, headers, field in (
        (deep, {"Content-Type": "application/json"}, "body"),
        ('{"a":' * 50 + "1" + "}" * 50, {"Content-Type": "application/json"}, "body"),
        (b"\xff\xfe{}", {"Content-Type": "application/json"}, "body"),
        ("1" * 5000, {"Content-Type": "application/json"}, "body"),
        ("", {}, "body"),
        # A made-up charset is not looked up: the body is read as UTF-8, and its metadata judged.
        (
            '{"region": "hovedstaden"}',
            {"Content-Type": "application/json; charset=no-such-charset"},
            "department",
        ),
    ):
        answer = file_receiver.call("POST", "/v1/submissions", data=data, headers=headers)
        status = 400 if field == "body" else 422
        assert answer.status_code == status, (str(data)[:40], answer.status_code, answer.text[:200])
        doc = assert_error_body(answer.content, status)
        assert [p["field"] for p in doc["problems"]] == [field]
    created = file_receiver.call("POST", "/v1/submissions", json=metadata("S-DEEP", ["R1.fastq.gz"]))
    sid = created.json()["submission_id"]
    register = file_receiver.call("POST", f"/v1/submissions/{sid}/register", data=deep)
    assert register.status_code == 400 and register.json()["problems"][0]["field"] == "body"


def test_an_idempotency_key_reused_with_another_body_is_422(file_receiver: Receiver) -> None:
    key = {"Idempotency-Key": "hostile-key-1"}
    body = metadata("S-IDEM", ["R1.fastq.gz"])
    first = file_receiver.call("POST", "/v1/submissions", json=body, headers=key)
    assert first.status_code == 201
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=3)
    replay = file_receiver.call(
        "POST", "/v1/submissions", data=reordered, headers={**key, "Content-Type": "application/json"}
    )
    assert replay.status_code == 200 and replay.json()["submission_id"] == first.json()["submission_id"]
    for changed in (
        metadata("S-IDEM-OTHER", ["R1.fastq.gz"]),
        metadata("S-IDEM", ["R1.fastq.gz", "R2.fastq.gz"]),
        metadata("S-IDEM", ["R1.fastq.gz"], department="Odense"),
    ):
        reused = file_receiver.call("POST", "/v1/submissions", json=changed, headers=key)
        assert reused.status_code == 422, reused.text
        doc = assert_error_body(reused.content, 422)
        assert doc["problems"][0]["field"] == "Idempotency-Key"
        assert first.json()["submission_id"] not in reused.text
    # Another holder's key space is its own.
    national = file_receiver.call(
        "POST", "/v1/submissions", json=metadata("S-IDEM-NGC", ["R1.fastq.gz"]), headers=key, holder="ngc"
    )
    assert national.status_code == 201


def test_a_seal_is_done_once_even_when_seals_race(file_receiver: Receiver, kafka_bootstrap: str) -> None:
    created = file_receiver.call("POST", "/v1/submissions", json=metadata("S-SEALONCE", ["R1.fastq.gz"]))
    sid = created.json()["submission_id"]
    assert file_receiver.call(
        "PUT", f"/v1/submissions/{sid}/files/R1.fastq.gz", data=b"@r\nACGT\n+\nIIII\n"
    ).ok
    answers: list[requests.Response] = []

    def seal() -> None:
        answers.append(file_receiver.call("POST", f"/v1/submissions/{sid}/seal"))

    racers = [threading.Thread(target=seal) for _ in range(6)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(60)
    for _ in range(5):
        seal()
    assert {a.status_code for a in answers} == {200}
    bodies: list[dict[str, Any]] = [a.json() for a in answers]
    assert all(b == bodies[0] for b in bodies)
    assert len(events_of(kafka_bootstrap, sid)) == 1
    assert log_lines(file_receiver).count("seal repeated; nothing emitted") >= 10


def test_ids_the_receiver_never_issues_are_unknown_like_any_other(file_receiver: Receiver) -> None:
    unknown = file_receiver.call("GET", "/v1/submissions/" + "0" * 32)
    assert unknown.status_code == 404
    for sid in ("%00", "a%00b", "..%2F..", "%E2%80%8B", "A" * 32, "0" * 33, "x" * 5000):
        for method, suffix in (("GET", ""), ("POST", "/seal"), ("HEAD", "/files/R1.fastq.gz")):
            answer = file_receiver.call(method, f"/v1/submissions/{sid}{suffix}")
            assert answer.status_code == 404, (sid, method, answer.status_code)
            if method != "HEAD":
                assert answer.content == unknown.content
