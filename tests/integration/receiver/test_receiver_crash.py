"""Uploads cut short, by a receiver killed mid-upload or a client gone away: the prefix is kept, nothing
looks complete, nothing is emitted, and the client resumes."""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import signal
import subprocess
import threading
from pathlib import Path

from shared.encryption import SEGMENT_SIZE
from tests.integration.receiver.conftest import TOKENS, Receiver, events_of, metadata
from tests.support import genomhub, wait_for


def send_until_released(
    receiver: Receiver, path: str, data: bytes, first: int, release: threading.Event
) -> None:
    """PUT ``data`` announcing its full length, but stop after ``first`` bytes until released."""
    conn = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=60)
    try:
        conn.putrequest("PUT", path)
        conn.putheader("Authorization", f"Bearer {TOKENS['hovedstaden']}")
        conn.putheader("Content-Length", str(len(data)))
        conn.endheaders()
        for i in range(0, first, 1 << 20):
            conn.send(data[i : min(i + (1 << 20), first)])
        release.wait(60)
        conn.send(data[first:])
        conn.getresponse()
    except OSError:
        pass  # the receiver died under us: that is the point
    finally:
        conn.close()


def test_crash_during_upload_emits_nothing_and_the_client_resumes(
    file_receiver: Receiver, kafka_bootstrap: str, tmp_path: Path
) -> None:
    data = os.urandom(40_000_000)
    reads = tmp_path / "R1.fastq.gz"
    reads.write_bytes(data)
    created = file_receiver.call("POST", "/v1/submissions", json=metadata("S-CRASH", ["R1.fastq.gz"]))
    sid = created.json()["submission_id"]
    path = f"/v1/submissions/{sid}/files/R1.fastq.gz"

    release = threading.Event()
    sender = threading.Thread(
        target=send_until_released, args=(file_receiver, path, data, 16_000_000, release)
    )
    sender.start()
    try:
        wait_for(
            lambda: int(file_receiver.call("HEAD", path).headers["Upload-Offset"]) >= 8_000_000,
            what="the first bytes to arrive",
        )
        file_receiver.stop(signal.SIGKILL)
    finally:
        release.set()
        sender.join(60)

    store = Path(file_receiver.store[len("file://") :])
    assert not (store / "hovedstaden" / "S-CRASH" / sid / "R1.fastq.gz").exists()
    partial = store / ".incoming" / sid / "R1.fastq.gz"
    kept = file_receiver.stored_prefix(partial)
    assert 0 < len(kept) < len(data) and data.startswith(kept)
    assert data[:SEGMENT_SIZE] not in partial.read_bytes()  # stored encrypted
    assert not events_of(kafka_bootstrap, sid)

    # The uploader starts while the receiver is still down: it backs off and retries.
    err = tmp_path / "upload.err"
    with err.open("w") as stderr:
        client = subprocess.Popen(
            genomhub(
                *("upload", "--url", file_receiver.url, "--submission", sid, "--no-checksum"),
                *("--region", "hovedstaden", "--sample", "S-CRASH", "--patient", "P-S-CRASH"),
                *("--department", "Rigshospitalet", "--analysis", "WGS", str(reads)),
            ),
            env={**os.environ, **file_receiver.cli_env()},
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        try:
            wait_for(lambda: "retrying in" in err.read_text(), what="the client to retry")
            file_receiver.start()  # the same state folder, store and port
            out, _ = client.communicate(timeout=180)
        finally:
            if client.poll() is None:
                client.kill()
    log = err.read_text()
    assert client.returncode == 0, log
    resumed = re.search(r"resuming at byte (\d+)", log)
    assert resumed is not None and int(resumed.group(1)) >= len(kept), log
    assert out.strip().splitlines()[-1] == sid

    (record,) = events_of(kafka_bootstrap, sid)
    assert hashlib.sha256(data).hexdigest() in record.value.decode()
    assert hashlib.md5(data).hexdigest() in record.value.decode()
    assert not partial.exists()
    assert (
        file_receiver.archived((store / "hovedstaden" / "S-CRASH" / sid / "R1.fastq.gz").as_uri(), len(data))
        == data
    )


def test_a_client_cut_off_mid_body_keeps_its_prefix_and_resumes(file_receiver: Receiver) -> None:
    data = os.urandom(6_000_000)
    created = file_receiver.call("POST", "/v1/submissions", json=metadata("S-CUT", ["R1.fastq.gz"]))
    path = f"/v1/submissions/{created.json()['submission_id']}/files/R1.fastq.gz"
    conn = http.client.HTTPConnection("127.0.0.1", file_receiver.port, timeout=60)
    conn.putrequest("PUT", path)
    conn.putheader("Authorization", f"Bearer {TOKENS['hovedstaden']}")
    conn.putheader("Content-Length", str(len(data)))
    conn.endheaders()
    conn.send(data[:3_500_000])
    conn.close()  # the uploader's network went away

    kept = 3_500_000 // SEGMENT_SIZE * SEGMENT_SIZE  # its whole segments: the tail short of one goes
    wait_for(
        lambda: file_receiver.call("HEAD", path).headers["Upload-Offset"] == str(kept),
        what="the prefix to be kept",
    )
    rest = file_receiver.call("PUT", path, data=data[kept:], headers={"Upload-Offset": str(kept)})
    assert rest.status_code == 200, rest.text
    assert rest.headers["Connection"] == "close"  # the body was read off the socket
    assert (rest.json()["sha256"], rest.json()["md5"]) == (
        hashlib.sha256(data).hexdigest(),
        hashlib.md5(data).hexdigest(),
    )
    assert file_receiver.call("GET", "/healthz").status_code == 200
