"""The receiver serves TLS itself, and `genomhub upload` verifies it: a real process, real certs.

A throwaway CA and a certificate for 127.0.0.1 (tests/tls.py) are given to the receiver as
GENOMHUB_HTTP_TLS_CERT / GENOMHUB_HTTP_TLS_KEY, as a mounted Secret would be. The upload
verifies the server against the CA given with --ca-bundle (or GENOMHUB_UPLOAD_CA_BUNDLE);
against another CA it is refused at once, and plain http:// to a non-loopback host is
refused before any connection.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.receiver.conftest import Receiver, _receiver, events_of
from tests.integration.receiver.test_receiver_upload import check_event, make_file
from tests.support import genomhub
from tests.tls import make_ca, make_server

UPLOAD = ("--region", "hovedstaden", "--patient", "P-TLS", "--department", "Rigshospitalet")


@pytest.fixture(scope="module")
def tls_receiver(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    tmp = tmp_path_factory.mktemp("receiver-tls")
    files = make_server(tmp)
    inbox = tmp / "inbox"
    inbox.mkdir()
    extra = {"GENOMHUB_HTTP_TLS_CERT": str(files.cert), "GENOMHUB_HTTP_TLS_KEY": str(files.key)}
    receiver = _receiver(tmp, "receiver-tls", (tmp / "store").as_uri(), inbox.as_uri(), extra)
    receiver.ca = files.ca
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


def upload(
    receiver: Receiver, url: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*genomhub("upload", "--url", url, *UPLOAD, *args)],
        env={**os.environ, **receiver.cli_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_an_upload_over_verified_tls_is_received_and_sealed(
    tls_receiver: Receiver, kafka_bootstrap: str, tmp_path: Path
) -> None:
    r1 = make_file(tmp_path, "R1.fastq.gz", 9_000_000)  # more than one 4 MiB buffer, over TLS
    r2 = make_file(tmp_path, "R2.fastq.gz", 1_000_001)
    done = upload(
        tls_receiver,
        tls_receiver.url,
        "--sample", "S-TLS", "--analysis", "WGS", "--ca-bundle", str(tls_receiver.ca), str(r1), str(r2),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    sid = done.stdout.strip().splitlines()[-1]
    (record,) = events_of(kafka_bootstrap, sid)
    check_event(record, sid, {"R1.fastq.gz": r1, "R2.fastq.gz": r2})
    # The CA bundle may come from the setting as well.
    r3 = make_file(tmp_path, "R3.fastq.gz", 100_000)
    again = upload(
        tls_receiver, tls_receiver.url, "--sample", "S-TLS-2", "--analysis", "WGS", str(r3),
        env={"GENOMHUB_UPLOAD_CA_BUNDLE": str(tls_receiver.ca)},
    )  # fmt: skip
    assert again.returncode == 0, again.stderr


def test_an_upload_to_a_server_of_another_ca_is_refused(tls_receiver: Receiver, tmp_path: Path) -> None:
    other_ca, _ = make_ca(tmp_path, "someone-else")
    r1 = make_file(tmp_path, "R1.fastq.gz", 10_000)
    for args in (("--ca-bundle", str(other_ca)), ()):  # another CA; the system store does not know ours
        refused = upload(
            tls_receiver, tls_receiver.url, "--sample", "S-WRONG-CA", "--analysis", "WGS", *args, str(r1)
        )
        assert refused.returncode != 0
        assert "TLS certificate was not verified" in refused.stderr, refused.stderr
        assert "retrying" not in refused.stderr  # a wrong CA is not a transient failure
    assert "S-WRONG-CA" not in tls_receiver.log.read_text()


def test_the_tls_receiver_speaks_no_plain_http(tls_receiver: Receiver) -> None:
    with socket.create_connection(("127.0.0.1", tls_receiver.port), timeout=10) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            answer = conn.recv(4096)
        except ConnectionResetError:
            answer = b""
    assert not answer.startswith(b"HTTP/1.1 200")
    assert tls_receiver.call("GET", "/healthz", holder=None).status_code == 200


def test_plain_http_to_a_remote_host_is_refused(tls_receiver: Receiver, tmp_path: Path) -> None:
    r1 = make_file(tmp_path, "R1.fastq.gz", 10_000)
    refused = upload(
        tls_receiver, "http://receiver.ngc.example:8480", "--sample", "S-PLAIN", "--analysis", "WGS", str(r1)
    )
    assert refused.returncode != 0
    assert "refusing plain http://" in refused.stderr
