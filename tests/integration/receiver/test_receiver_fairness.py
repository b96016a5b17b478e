"""One region cannot starve the others: per-region upload slots, a minimum rate, slow heads.

Two receiver processes of their own (small limits and timeouts keep the tests short), with
raw sockets on loopback as clients, so a body or a request head can trickle exactly as a
hostile or broken client would send it.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import select
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from services.receiver.client import LocalFile, Plan, Progress, Uploader
from shared.encryption import SEGMENT_SIZE
from shared.events import FileRole
from tests.integration.receiver.conftest import TOKENS, Receiver, _receiver, metadata

PER_REGION = 2
HEAD_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def receivers(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Receiver]]:
    """``slots``: 4 uploads at once, 2 a region, no minimum rate; ``pace``: 50 kB/s after 1 s."""
    made = {}
    for name, extra in {
        "slots": {
            "GENOMHUB_RECEIVER_MAX_UPLOADS": "4",
            "GENOMHUB_RECEIVER_MAX_UPLOADS_PER_REGION": str(PER_REGION),
            "GENOMHUB_RECEIVER_MIN_RATE": "0",
        },
        "pace": {
            "GENOMHUB_RECEIVER_MIN_RATE": "50000",
            "GENOMHUB_RECEIVER_MIN_RATE_GRACE": "1",
            "GENOMHUB_HTTP_HEAD_TIMEOUT": str(HEAD_TIMEOUT),
        },
    }.items():
        tmp = tmp_path_factory.mktemp(f"receiver-{name}")
        inbox = tmp / "inbox"
        inbox.mkdir()
        made[name] = _receiver(tmp, f"receiver-{name}", (tmp / "store").as_uri(), inbox.as_uri(), extra)
    for receiver in made.values():
        receiver.start()
    try:
        yield made
    finally:
        for receiver in made.values():
            receiver.stop()


def open_submission(receiver: Receiver, sample: str, names: list[str], region: str) -> str:
    created = receiver.call(
        "POST", "/v1/submissions", holder=region, json=metadata(sample, names, region=region)
    )
    assert created.status_code == 201, created.text
    return str(created.json()["submission_id"])


def put_head(sid: str, name: str, length: int, region: str, offset: int = 0) -> bytes:
    return (
        f"PUT /v1/submissions/{sid}/files/{name} HTTP/1.1\r\nHost: receiver\r\n"
        f"Authorization: Bearer {TOKENS[region]}\r\nContent-Length: {length}\r\n"
        f"Upload-Offset: {offset}\r\n\r\n"
    ).encode()


def answer_of(conn: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes, or what came within ``timeout``."""
    conn.settimeout(timeout)
    got = b""
    try:
        while chunk := conn.recv(65536):
            got += chunk
    except TimeoutError:
        pass
    return got


def test_one_regions_trickling_uploads_leave_slots_for_another(receivers: dict[str, Receiver]) -> None:
    receiver = receivers["slots"]
    names = [f"T{i}.fastq.gz" for i in range(4)]
    sid = open_submission(receiver, "S-TRICKLE", names, "hovedstaden")
    trickles = []
    try:
        for name in names:  # as many as there are slots in all: each sends 10 bytes and waits
            conn = socket.create_connection(("127.0.0.1", receiver.port))
            conn.sendall(put_head(sid, name, 1_000_000, "hovedstaden") + b"0123456789")
            trickles.append(conn)
            time.sleep(0.3)
        held, refused = trickles[:PER_REGION], trickles[PER_REGION:]
        for conn in refused:
            answer = answer_of(conn, 10)
            assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
            assert b"uploads of hovedstaden are being received" in answer
            assert b"Retry-After" in answer
        for conn in held:
            assert not select.select([conn], [], [], 0)[0], "a held upload is still being received"

        data = os.urandom(200_000)
        other = open_submission(receiver, "S-OTHER", ["R1.fastq.gz"], "sjaelland")
        put = receiver.call(
            "PUT", f"/v1/submissions/{other}/files/R1.fastq.gz", holder="sjaelland", data=data
        )
        assert put.status_code == 200, put.text
        assert put.json()["sha256"] == hashlib.sha256(data).hexdigest()
    finally:
        for conn in trickles:
            conn.close()
    # Once its trickles are gone, the region has its slots again.
    again = open_submission(receiver, "S-AGAIN", ["R1.fastq.gz"], "hovedstaden")
    deadline = time.monotonic() + 10
    while True:
        put = receiver.call("PUT", f"/v1/submissions/{again}/files/R1.fastq.gz", data=b"x" * 1000)
        if put.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert put.status_code == 200, put.text


def test_a_put_slower_than_the_minimum_rate_is_cut_off_and_resumes(receivers: dict[str, Receiver]) -> None:
    receiver = receivers["pace"]
    data = os.urandom(300_000)
    sid = open_submission(receiver, "S-SLOW", ["R1.fastq.gz"], "hovedstaden")
    path = f"/v1/submissions/{sid}/files/R1.fastq.gz"
    conn = socket.create_connection(("127.0.0.1", receiver.port))
    sent = 100_000
    conn.sendall(put_head(sid, "R1.fastq.gz", len(data), "hovedstaden") + data[:sent])
    started = time.monotonic()
    answer = b""
    try:
        while time.monotonic() - started < 20:  # one byte every 0.2 s: 5 B/s, far below 50 kB/s
            if select.select([conn], [], [], 0.2)[0]:
                answer = answer_of(conn, 5)
                break
            conn.sendall(data[sent : sent + 1])
            sent += 1
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        conn.close()
    elapsed = time.monotonic() - started
    assert elapsed < 10, "the crawling upload was never cut off"
    if answer:  # the answer may be lost to a reset if a byte crossed the close
        assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
        assert b"upload interrupted" in answer
    assert "slower than 50000 bytes/s" in receiver.log.read_text()

    head = receiver.call("HEAD", path)
    arrived = int(head.headers["Upload-Offset"])
    # What arrived is kept in whole segments: the tail short of one is sent again.
    assert arrived % SEGMENT_SIZE == 0 and head.headers["Upload-Complete"] == "?0"
    assert 100_000 // SEGMENT_SIZE * SEGMENT_SIZE <= arrived <= sent
    rest = receiver.call("PUT", path, data=data[arrived:], headers={"Upload-Offset": str(arrived)})
    assert rest.status_code == 200, rest.text
    assert rest.json()["sha256"] == hashlib.sha256(data).hexdigest()


def test_a_fast_put_is_not_cut_off(receivers: dict[str, Receiver]) -> None:
    receiver = receivers["pace"]
    data = os.urandom(8_000_000)
    sid = open_submission(receiver, "S-FAST", ["R1.fastq.gz"], "hovedstaden")
    put = receiver.call("PUT", f"/v1/submissions/{sid}/files/R1.fastq.gz", data=data)
    assert put.status_code == 200, put.text
    assert put.json()["sha256"] == hashlib.sha256(data).hexdigest()


def closed_within(conn: socket.socket, timeout: float) -> float | None:
    """Seconds until the server closed ``conn`` (EOF or reset), or None if it stayed open."""
    started = time.monotonic()
    conn.settimeout(timeout)
    try:
        while conn.recv(4096):
            pass
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def trickle(conn: socket.socket, data: bytes) -> None:
    """Send ``data`` one byte every 0.25 s, stopping once the server answers or hangs up."""
    try:
        for byte in data:
            if select.select([conn], [], [], 0.25)[0]:
                break
            conn.sendall(bytes([byte]))
    except (BrokenPipeError, ConnectionResetError):
        pass


def test_a_connection_trickling_its_request_head_is_closed(receivers: dict[str, Receiver]) -> None:
    receiver = receivers["pace"]
    conn = socket.create_connection(("127.0.0.1", receiver.port))
    started = time.monotonic()
    head = b"GET /healthz HTTP/1.1\r\nHost: receiver\r\nX-Slow: " + b"a" * 100
    trickle(conn, head)  # the head is never finished
    waited = closed_within(conn, 10)
    conn.close()
    assert waited is not None, "the trickling connection stayed open"
    assert HEAD_TIMEOUT - 0.5 <= time.monotonic() - started <= HEAD_TIMEOUT + 3


def test_a_silent_connection_and_a_slow_second_head_are_closed(receivers: dict[str, Receiver]) -> None:
    receiver = receivers["pace"]
    silent = socket.create_connection(("127.0.0.1", receiver.port))
    assert closed_within(silent, 10) is not None, "a connection that never sent a byte stayed open"
    silent.close()

    kept = socket.create_connection(("127.0.0.1", receiver.port))
    kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: receiver\r\n\r\n")
    kept.settimeout(5)
    first = kept.recv(65536)
    assert first.startswith(b"HTTP/1.1 200") and b"Connection: close" not in first
    time.sleep(HEAD_TIMEOUT / 2)
    kept.sendall(b"GET /healthz HTTP/1.1\r\n")  # then nothing: the second head never ends
    started = time.monotonic()
    assert closed_within(kept, 10) is not None, "a kept-alive connection with half a head stayed open"
    assert time.monotonic() - started <= HEAD_TIMEOUT + 3
    kept.close()

    # A prompt client on the same server is served as before.
    assert receiver.call("GET", "/healthz", holder=None).status_code == 200


def test_a_trickled_small_body_is_closed_like_a_slow_head(receivers: dict[str, Receiver]) -> None:
    receiver = receivers["pace"]
    body = b'{"region": "hovedstaden", "department": "Rigshospitalet"' + b" " * 200 + b"}"
    head = (
        f"POST /v1/submissions HTTP/1.1\r\nHost: receiver\r\nAuthorization: Bearer {TOKENS['hovedstaden']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    conn = socket.create_connection(("127.0.0.1", receiver.port))
    started = time.monotonic()
    conn.sendall(head)
    trickle(conn, body)  # the body is never finished
    assert closed_within(conn, 10) is not None, "the trickling POST stayed open"
    conn.close()
    assert time.monotonic() - started <= HEAD_TIMEOUT + 3


def test_an_upload_longer_than_the_head_timeout_is_not_cut_off(receivers: dict[str, Receiver]) -> None:
    """The head deadline ends where the upload's own limits begin: a steady PUT may take long."""
    receiver = receivers["pace"]
    data = os.urandom(800_000)
    sid = open_submission(receiver, "S-STEADY", ["R1.fastq.gz"], "hovedstaden")
    conn = socket.create_connection(("127.0.0.1", receiver.port))
    started = time.monotonic()
    conn.sendall(put_head(sid, "R1.fastq.gz", len(data), "hovedstaden"))
    for at in range(0, len(data), 50_000):  # 50 kB every 0.1 s: 500 kB/s for 1.6 s ...
        conn.sendall(data[at : at + 50_000])
        time.sleep(0.1 if at < 400_000 else 0.3)  # ... then 170 kB/s, past the head timeout
    answer = answer_of(conn, 10)
    conn.close()
    assert time.monotonic() - started > HEAD_TIMEOUT
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert hashlib.sha256(data).hexdigest().encode() in answer


class CrawlingOnce(Uploader):
    """An uploader whose first PUT crawls after 100 kB (a link that degrades), then recovers."""

    crawled = False

    async def _read(self, path: Path, offset: int, progress: Progress) -> AsyncIterator[bytes]:  # type: ignore[override]
        data = path.read_bytes()[offset:]
        if not self.crawled:
            self.crawled = True
            yield data[:100_000]
            for i in range(100_000, len(data)):
                await asyncio.sleep(0.2)
                yield data[i : i + 1]
            return
        yield data


def test_genomhub_upload_resumes_after_being_cut_off_for_crawling(
    receivers: dict[str, Receiver], tmp_path: Path
) -> None:
    receiver = receivers["pace"]
    reads = tmp_path / "R1.fastq.gz"
    reads.write_bytes(os.urandom(400_000))
    said = io.StringIO()
    uploader = CrawlingOnce(receiver.url, TOKENS["hovedstaden"], backoff=0.1, stream=said)
    plan = Plan(
        "hovedstaden", "Rigshospitalet", "S-RESUMED", "P-RESUMED", "WGS", "ILLUMINA",
        [LocalFile(reads, FileRole.RAW_READS)],
    )  # fmt: skip
    sealed = asyncio.run(uploader.upload(plan))
    assert uploader.crawled
    assert "the server cut the upload off at byte" in said.getvalue()
    assert "resuming at byte" in said.getvalue()
    (stored,) = sealed["files"]
    assert stored["sha256"] == hashlib.sha256(reads.read_bytes()).hexdigest()
