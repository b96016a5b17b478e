"""Helpers the tests share: running genomhub processes and reading topics on the real broker."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from services.spoke.verifier import FeedVerifier, Revision
from shared.bus import read_records
from shared.config import KafkaSettings
from shared.events import Region
from shared.feed import FeedRefusal, read_hub_public_key
from shared.kafka import KafkaAccess, kafka_access
from shared.topics import ADMIN
from tools.background import free_port

__all__ = ["free_port"]

ROOT = Path(__file__).resolve().parent.parent


class Process:
    """A genomhub process started for a test; its output goes to ``log``."""

    def __init__(self, args: Sequence[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.args = list(args)
        self.log = log
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            self.args, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT, start_new_session=True
        )
        return self

    def wait_http(
        self, port: int, path: str = "/healthz", timeout: float = 60, tls: ssl.SSLContext | None = None
    ) -> None:
        """Wait until the process answers 200 on ``path`` (over HTTPS, verified, with ``tls``)."""
        scheme = "https" if tls is not None else "http"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.args} exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(
                    f"{scheme}://127.0.0.1:{port}{path}", timeout=1, context=tls
                ) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{self.args} not serving {path} in {timeout} s:\n{self.tail()}")

    def wait_exit(self, timeout: float = 60) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def tail(self, lines: int = 40) -> str:
        return (
            "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""
        )


ARCHIVE_PASSPHRASE = "the test session's archive key"
"""What locks the session's archive key (``<home>/keys``), given to every process through
``GENOMHUB_ARCHIVE_KEY_PASSPHRASE``."""


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def genomhub(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("genomhub")), *args]


def kafka(principal: str = ADMIN, bootstrap: str | None = None) -> KafkaAccess:
    """The one way tests reach a broker: as ``principal`` (a service, ``operator``,
    ``finance`` or ``admin``), with the credentials the test session's local broker wrote at
    format time, on that broker or the one at ``bootstrap``. ``kafka("validator").producer()``
    is a client holding the validator's credentials, with exactly the validator's rights.
    """
    return kafka_access(principal, KafkaSettings(bootstrap=bootstrap) if bootstrap is not None else None)


def anonymous(bootstrap: str) -> KafkaAccess:
    """A client with no credentials at all (no SASL), to show the broker refuses it."""
    return KafkaAccess(bootstrap, "anonymous", None, "PLAINTEXT")


def records(bootstrap: str, topic: str) -> list[Any]:
    """Every record on ``topic`` from the beginning, read as the admin without a consumer group."""
    return list(asyncio.run(read_records(kafka(ADMIN, bootstrap), [topic])))


def wait_for(predicate: Any, timeout: float = 60, interval: float = 0.3, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def post_json(url: str, token: str, body: Any) -> tuple[int, Any]:
    """POST ``body`` as JSON to ``url`` with ``token`` as the bearer: the status and the JSON body."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def get_json(url: str, token: str | None) -> tuple[int, Any]:
    """GET ``url`` with ``token`` as the bearer (no ``Authorization`` without one): the status
    and the JSON body, of an error answer as of a success (``None`` for an empty body)."""
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def raw_http(port: int, request: bytes, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as it is on a fresh socket; the status, headers and body of the answer.

    For requests no HTTP client would send (a header of 10 kB, a control character in one).
    """
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(request)
        answer = b""
        try:
            while chunk := conn.recv(65536):
                answer += chunk
                head, sep, body = answer.partition(b"\r\n\r\n")
                length = next(
                    (
                        int(v)
                        for k, _, v in (h.partition(b":") for h in head.split(b"\r\n")[1:])
                        if k.strip().lower() == b"content-length"
                    ),
                    None,
                )
                if sep and length is not None and len(body) >= length:
                    break
        except TimeoutError:
            pass
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


def assert_error_body(body: bytes | str, status: int) -> dict[str, Any]:
    """``body`` is the one error body of every genomhub API (``shared.http.ErrorBody``)."""
    import json

    from shared.http import ErrorBody

    parsed = ErrorBody.model_validate_json(body)
    assert parsed.status == status, parsed
    doc: dict[str, Any] = json.loads(body)
    assert set(doc) == {"status", "error", "problems", "detail"}, doc
    return doc


def serve_app(app: Any) -> Any:
    """An aiohttp application on a real loopback socket, served as the services serve it
    (``shared.http.ServiceRunner``) by its own event loop in a thread; yields its base URL."""
    import threading
    from contextlib import contextmanager

    from shared.http import ServiceRunner

    @contextmanager
    def serving() -> Any:
        port = free_port()
        loop = asyncio.new_event_loop()
        runner = ServiceRunner(app)
        started = threading.Event()

        def run() -> None:
            from aiohttp import web

            asyncio.set_event_loop(loop)
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
            started.set()
            loop.run_forever()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        assert started.wait(10), "the application did not start"
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)

    return serving()


def crypt4gh_encrypt(plaintext: bytes, recipient: Path) -> bytes:
    """The ``crypt4gh`` package's own command line, as a region encrypts a file to a key."""
    return _crypt4gh("encrypt", "--recipient_pk", str(recipient), stdin=plaintext)


def crypt4gh_decrypt(encrypted: bytes, secret: Path, passphrase: str) -> bytes:
    """The ``crypt4gh`` command line decrypting a whole Crypt4GH file (header and body)."""
    return _crypt4gh("decrypt", "--sk", str(secret), stdin=encrypted, env={"C4GH_PASSPHRASE": passphrase})


def _crypt4gh(*args: str, stdin: bytes, env: dict[str, str] | None = None) -> bytes:
    command = [str(Path(sys.executable).with_name("crypt4gh")), *args]
    done = subprocess.run(command, input=stdin, capture_output=True, env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


class FeedReading:
    """A spoke's verifier reading the hub's copy of its feed, as MirrorMaker 2 hands it on:
    each record once, in its partition's order, every refusal kept for the test to show."""

    def __init__(self, access: KafkaAccess, region: Region, pinned: Path) -> None:
        self.access = access
        self.verifier = FeedVerifier(region, read_hub_public_key(pinned))
        self.positions: dict[int, int] = {}
        self.refused: list[FeedRefusal] = []
        self.shown: Revision | None = None

    def catch_up(self) -> Revision | None:
        records = asyncio.run(read_records(self.access, [self.verifier.feed], committed=True))
        for record in sorted(records, key=lambda r: (r.partition, r.offset)):
            if record.offset < self.positions.get(record.partition, 0):
                continue
            self.positions[record.partition] = record.offset + 1
            try:
                outcome = self.verifier.receive(record.partition, record.key, record.value)
            except FeedRefusal as refusal:
                self.refused.append(refusal)
                continue
            self.refused += outcome.refused
            self.shown = outcome.revision or self.shown
        return self.shown

    def sees(self, wanted: Callable[[Revision], bool], timeout: float = 60) -> Revision:
        """The first verified revision for which ``wanted`` holds."""

        def shown() -> Revision | None:
            revision = self.catch_up()
            return revision if revision is not None and wanted(revision) else None

        found: Revision = wait_for(
            shown, timeout=timeout, what=f"a verified revision of {self.verifier.feed}"
        )
        return found
