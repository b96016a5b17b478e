"""The regional uploader's side of the receiver API: create, stream each file, seal.

A few hundred gigabytes cross flaky hospital networks, so every step may be repeated:
creating carries an ``Idempotency-Key`` (a retried POST returns the same submission), each
file starts with a ``HEAD`` that says how much already arrived and the ``PUT`` sends only
the rest (``Upload-Offset``), and seal is idempotent on the server. Network errors, 5xx and
"busy" answers are retried with exponential backoff; any other 4xx is the caller's mistake
and stops the upload with the server's message.

Genome files and the region's token travel only over TLS, with the server's certificate
verified (the system's CA store, or NGC's own CA with ``ca_bundle``); plain ``http://`` is
for a receiver on this machine's loopback only (the embedded stack), never across a network.
A certificate that does not verify is not retried: it is a wrong CA bundle or the wrong
server, and retrying would only hide that.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import ssl
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import quote, urlsplit

import aiohttp
import rich.progress
from rich.console import Console

from shared.events import FileRole
from shared.retry import Backoff, GaveUp, retrying
from shared.storage import CHUNK

T = TypeVar("T")
RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504}


class UploadError(Exception):
    """The server refused the upload for a reason retrying cannot fix."""


class Retryable(Exception):
    """A transient failure: the same request may succeed later."""


def loopback(host: str) -> bool:
    """Whether ``host`` is this machine's loopback (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def transport_security(base_url: str, ca_bundle: Path | None = None) -> ssl.SSLContext | None:
    """How to reach ``base_url``: a verifying TLS context for https, None for loopback http.

    Refuses (:class:`UploadError`) plain http to any other host and any other scheme: a
    bearer token and genome files must not cross a network in the clear.
    """
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if parts.scheme == "http":
        if loopback(host):
            return None
        raise UploadError(
            f"refusing plain http:// to {host or base_url!r}: tokens and genome files travel only over "
            "https:// (plain http is for a receiver on this machine's loopback)"
        )
    if parts.scheme != "https" or not host:
        raise UploadError(f"the receiver URL must be https://HOST[:PORT], not {base_url!r}")
    context = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle is not None else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


@dataclass(frozen=True)
class LocalFile:
    path: Path
    role: FileRole

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class Plan:
    """What to report: the submission's metadata and the local files."""

    region: str
    department: str
    sample_id: str
    patient_id: str
    analysis_type: str
    platform: str
    files: list[LocalFile]

    def metadata(self, digests: dict[str, str]) -> dict[str, Any]:
        return {
            "region": self.region,
            "department": self.department,
            "sample_id": self.sample_id,
            "patient_id": self.patient_id,
            "analysis_type": self.analysis_type,
            "platform": self.platform,
            "files": [
                {"name": f.name, "role": f.role.value}
                | ({"sha256": digests[f.name]} if f.name in digests else {})
                for f in self.files
            ],
        }


class Progress:
    """An upload's progress: rich's bar on a terminal; on anything else (a log, CI), a plain
    line every tenth of the way, which a redrawn bar would garble."""

    def __init__(self, name: str, total: int, stream: IO[str], start: int = 0) -> None:
        self.name = name
        self.total = total
        self.stream = stream
        self.done = start
        self.started = time.monotonic()
        self.start = start
        self._last_tenth = start * 10 // total if total else 10
        self._bar: rich.progress.Progress | None = None
        if stream.isatty():
            self._bar = rich.progress.Progress(
                rich.progress.TextColumn("{task.description}"),
                rich.progress.BarColumn(),
                rich.progress.DownloadColumn(),
                rich.progress.TransferSpeedColumn(),
                rich.progress.TimeRemainingColumn(),
                console=Console(file=stream),
            )
            self._task = self._bar.add_task(name, total=total, completed=start)
            self._bar.start()

    def advance(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
        elif self.total:
            tenth = self.done * 10 // self.total
            if tenth > self._last_tenth:
                self._last_tenth = tenth
                self.stream.write(f"{self.name}: {self._figures()}\n")
                self.stream.flush()

    def close(self) -> None:
        """Stops the bar's redrawing, after the last byte or when the attempt fails."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def _figures(self) -> str:
        pct = 100 * self.done / self.total if self.total else 100.0
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = (self.done - self.start) / elapsed / 1e6
        return f"{pct:5.1f}% {self.done / 1e9:.2f}/{self.total / 1e9:.2f} GB {rate:.0f} MB/s"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Uploader:
    """Talks to one receiver with one bearer token."""

    base_url: str
    token: str
    retries: int = 8
    backoff: float = 0.5
    stream: IO[str] = field(default_factory=lambda: sys.stderr)
    ca_bundle: Path | None = None
    """PEM CA bundle the server's certificate must chain to; None: the system's CA store."""

    def _say(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    async def _retrying(self, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run ``attempt`` until it succeeds, backing off after each transient failure."""

        async def verified() -> T:
            try:
                return await attempt()
            except aiohttp.ClientConnectorCertificateError as exc:  # not transient: said at once
                bundle = f"the CA bundle {self.ca_bundle}" if self.ca_bundle else "the system's CA store"
                raise UploadError(
                    f"{what}: the server's TLS certificate was not verified against {bundle}: "
                    f"{exc.certificate_error}. Is this NGC's receiver, and is --ca-bundle NGC's CA?"
                ) from exc

        def said(exc: BaseException, pause: float) -> None:
            self._say(f"{what}: {type(exc).__name__}: {exc}; retrying in {pause:.1f} s")

        backoff = Backoff(self.backoff, self.retries + 1, ceiling=30.0)
        try:
            return await retrying(verified, backoff, (aiohttp.ClientError, TimeoutError, Retryable), said)
        except GaveUp as gave_up:
            raise UploadError(f"{what}: gave up after {self.retries} retries: {gave_up.last}") from gave_up.last

    @staticmethod
    async def _check(response: aiohttp.ClientResponse, what: str) -> dict[str, Any]:
        if response.status in RETRY_STATUSES:
            raise Retryable(f"HTTP {response.status}")
        try:
            body: dict[str, Any] = await response.json(content_type=None)
        except ValueError:
            body = {"error": (await response.text())[:500]}
        if response.status >= 400:
            raise UploadError(f"{what}: HTTP {response.status}: {body}")
        return body

    async def upload(
        self, plan: Plan, submission_id: str | None = None, checksum: bool = True
    ) -> dict[str, Any]:
        """Report ``plan``; returns the seal's answer (submission id, event id, files)."""
        tls = transport_security(self.base_url, self.ca_bundle)  # refused before any file is read
        digests = {f.name: await asyncio.to_thread(sha256_of, f.path) for f in plan.files} if checksum else {}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=300)
        headers = {"Authorization": f"Bearer {self.token}"}
        connector = aiohttp.TCPConnector(ssl=tls if tls is not None else False)
        async with aiohttp.ClientSession(
            self.base_url, headers=headers, timeout=timeout, connector=connector
        ) as session:
            if submission_id is None:
                submission_id = await self._create(session, plan.metadata(digests))
                self._say(f"submission {submission_id} opened")
            else:
                self._say(f"continuing submission {submission_id}")
            for local in plan.files:
                await self._send(session, submission_id, local)
            return await self._seal(session, submission_id)

    async def _create(self, session: aiohttp.ClientSession, metadata: dict[str, Any]) -> str:
        key = uuid.uuid4().hex  # the same key on every retry: one submission, however many tries

        async def attempt() -> str:
            async with session.post("/v1/submissions", json=metadata, headers={"Idempotency-Key": key}) as r:
                return str((await self._check(r, "create submission"))["submission_id"])

        return await self._retrying("create submission", attempt)

    async def _send(self, session: aiohttp.ClientSession, submission_id: str, local: LocalFile) -> None:
        path = f"/v1/submissions/{submission_id}/files/{quote(local.name, safe='')}"
        size = local.path.stat().st_size

        async def attempt() -> None:
            async with session.head(path) as r:
                if r.status != 200:
                    await self._check(r, f"HEAD {local.name}")
                    raise UploadError(f"HEAD {local.name}: HTTP {r.status}")
                offset = int(r.headers.get("Upload-Offset", "0"))
                complete = r.headers.get("Upload-Complete") == "?1"
            if complete:
                if offset != size:
                    raise UploadError(f"{local.name}: the server holds {offset} bytes, the file has {size}")
                self._say(f"{local.name}: already received")
                return
            if offset > size:
                raise UploadError(f"{local.name}: the server holds {offset} bytes, the file has only {size}")
            if offset:
                self._say(f"{local.name}: resuming at byte {offset}")
            progress = Progress(local.name, size, self.stream, start=offset)
            body = self._read(local.path, offset, progress)
            put_headers = {"Upload-Offset": str(offset), "Content-Length": str(size - offset)}
            async with session.put(path, data=body, headers=put_headers) as r:
                if r.status == 409 and "Upload-Offset" in r.headers:
                    raise Retryable("offset moved on the server")
                if r.status == 400 and "Upload-Offset" in r.headers:  # too slow or silent: resume
                    raise Retryable(f"the server cut the upload off at byte {r.headers['Upload-Offset']}")
                if r.status == 409 and "Retry-After" in r.headers:
                    raise Retryable("the file is busy on the server")
                result = await self._check(r, f"PUT {local.name}")
            if not result.get("complete"):
                raise Retryable(f"{local.name} incomplete after PUT")

        await self._retrying(f"upload {local.name}", attempt)

    @staticmethod
    async def _read(path: Path, offset: int, progress: Progress) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        try:
            with path.open("rb") as handle:
                handle.seek(offset)
                while chunk := await loop.run_in_executor(None, handle.read, CHUNK):
                    yield chunk
                    progress.advance(len(chunk))
        finally:
            progress.close()

    async def _seal(self, session: aiohttp.ClientSession, submission_id: str) -> dict[str, Any]:
        async def attempt() -> dict[str, Any]:
            async with session.post(f"/v1/submissions/{submission_id}/seal") as r:
                return await self._check(r, "seal")

        return await self._retrying("seal", attempt)
