"""Each service's HTTP side: health, readiness, Prometheus metrics, and its own API routes.

One aiohttp application per service process, run beside the Kafka consumer in the same
event loop: one HTTP stack to learn.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import json
import os
import select
import socket
import ssl
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, Literal, TypeVar

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, LineTooLong
from aiohttp.web_protocol import RequestHandler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from shared.telemetry import get_logger

ReadinessCheck = Callable[[], Awaitable[None]]
PROBES = ("/healthz", "/readyz", "/metrics")
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
"""The host names plain http is allowed to: a service's clients speak https to anything else."""
"""The paths :func:`make_web` serves to the cluster's probes and scraper; public in every API."""
T = TypeVar("T")
log = get_logger(__name__)
BODY_TAKEN = web.RequestKey("body_taken", bool)


class FieldProblem(BaseModel):
    """One thing wrong with a request, and where: what a client needs to fix it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str = Field(
        description="Where: a body field as a path (`files[0].name`), a query parameter, a path "
        "parameter or a header."
    )
    code: str = Field(
        default="invalid", description="Stable and machine-readable: `invalid`, `direct_identifier`..."
    )
    message: str = Field(description="What is wrong; never the offending value, which may be a CPR number.")


Ga4gh = Literal["drs", "htsget"]
"""The GA4GH API whose error fields a route's errors carry beside genomhub's own."""
HTSGET_ERRORS = {400: "InvalidInput", 401: "InvalidAuthentication", 403: "PermissionDenied", 404: "NotFound"}
"""htsget's error name by status, where the message does not start with a name of its own
(``InvalidRange: ...``, ``UnsupportedFormat: ...``)."""
_HTSGET_NAMED = {"InvalidRange", "UnsupportedFormat", *HTSGET_ERRORS.values()}


class HtsgetError(BaseModel):
    """htsget 1.3's error object."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    error: str = Field(description="htsget's name: InvalidInput, InvalidRange, NotFound, PermissionDenied...")
    message: str


class ErrorBody(BaseModel):
    """The one body of every error answer of every genomhub HTTP API, aiohttp's own included."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: int = Field(description="The HTTP status, repeated for logs and proxies that lose it.")
    error: str = Field(description="What went wrong, for a person.")
    problems: list[FieldProblem] = Field(default_factory=list, description="Each field refused, if any.")
    detail: dict[str, Any] = Field(
        default_factory=dict,
        description="Facts that help the client go on, e.g. how many bytes arrived or which files are missing.",
    )
    msg: str | None = Field(
        default=None, description="GA4GH routes (DRS) only: DRS's own field for `error`, which it repeats."
    )
    status_code: int | None = Field(
        default=None, description="GA4GH routes (DRS) only: DRS's own field for `status`, which it repeats."
    )
    htsget: HtsgetError | None = Field(default=None, description="htsget routes only: htsget's error object.")


ERROR_MEDIA_TYPE = "application/json"
_ERROR_CLASSES: dict[int, type[web.HTTPError]] = {}


def error_body(
    status: int,
    error: str,
    problems: list[FieldProblem] | None = None,
    detail: dict[str, Any] | None = None,
    *,
    ga4gh: Ga4gh | None = None,
) -> str:
    """The JSON text of :class:`ErrorBody`: the one error body, built in one place.

    ``ga4gh`` adds the fields of that GA4GH API's error: DRS's ``msg`` and ``status_code``,
    htsget's ``htsget`` object, so a GA4GH client reads its own shape and a genomhub client
    still reads ours."""
    name, colon, _ = error.partition(":")
    htsget = None
    if ga4gh == "htsget":
        named = name if colon and name in _HTSGET_NAMED else HTSGET_ERRORS.get(status, "InvalidInput")
        htsget = HtsgetError(error=named, message=error)
    return ErrorBody(
        status=status,
        error=error,
        problems=problems or [],
        detail=detail or {},
        msg=error if ga4gh == "drs" else None,
        status_code=status if ga4gh == "drs" else None,
        htsget=htsget,
    ).model_dump_json(exclude_none=True)


def _error_class(status: int) -> type[web.HTTPError]:
    """An ``HTTPError`` subclass for ``status``, made once: aiohttp's own need extra arguments (405, 413)."""
    if not 400 <= status <= 599:
        raise ValueError(f"{status} is not an error status")
    cls = _ERROR_CLASSES.get(status)
    if cls is None:
        cls = type(f"HTTPError{status}", (web.HTTPError,), {"status_code": status})
        _ERROR_CLASSES[status] = cls
    return cls


def http_error(
    status: int,
    error: str,
    *,
    problems: list[FieldProblem] | None = None,
    detail: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    ga4gh: Ga4gh | None = None,
) -> web.HTTPException:
    """The exception a handler raises to answer ``status`` with the one error body."""
    return _error_class(status)(
        text=error_body(status, error, problems, detail, ga4gh=ga4gh),
        content_type=ERROR_MEDIA_TYPE,
        headers=headers,
    )


def error_response(
    status: int,
    error: str,
    *,
    problems: list[FieldProblem] | None = None,
    detail: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """The response with the one error body, for code that returns rather than raises."""
    return web.Response(
        status=status,
        text=error_body(status, error, problems, detail),
        content_type=ERROR_MEDIA_TYPE,
        headers=headers,
    )


MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays and objects a JSON body may have; no API needs more than four."""


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests deeper than ``limit``; iterative, so no depth can overflow it."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


async def json_body(request: web.Request, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The request's body as JSON, or 400 (413 beyond ``client_max_size``) naming ``body``.

    Read as bytes and decoded as UTF-8 (RFC 8259) whatever charset the Content-Type claims,
    so a made-up charset is a 400, not a ``LookupError``; nesting beyond ``max_depth`` is
    refused (Python's parser would raise ``RecursionError`` on a 100k-deep array).
    """
    raw = await request.read()

    def refused(message: str) -> web.HTTPException:
        return http_error(
            400, "the body is not acceptable JSON", problems=[FieldProblem(field="body", message=message)]
        )

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise refused("not UTF-8") from None
    try:
        value = json.loads(text)
    except RecursionError:
        raise refused(f"nested deeper than {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise refused(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError:  # an integer of more than 4300 digits
        raise refused("a number is too long") from None
    if _depth_exceeds(value, max_depth):
        raise refused(f"nested deeper than {max_depth} levels")
    return value


def _is_error_body(exc: web.HTTPException) -> bool:
    return exc.content_type == ERROR_MEDIA_TYPE and isinstance(exc.text, str) and '"status":' in exc.text


_KEPT_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After", "Upload-Offset", "Cache-Control")


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every error answer in the one body: aiohttp's own 404, 405 and 413 too, and 500s.

    An unexpected exception is logged here (through the redacting log pipeline) and answered
    500 without any of its text: an exception message may quote what the client sent.
    """
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or _is_error_body(exc):
            raise
        headers = {k: exc.headers[k] for k in _KEPT_HEADERS if k in exc.headers}
        raise http_error(exc.status, exc.reason, headers=headers) from None
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception:
        log.exception("request failed", method=request.method, path=request.path)
        raise http_error(500, "internal error; the service has logged it") from None


def make_web(readiness: list[ReadinessCheck], before_scrape: ReadinessCheck | None = None) -> web.Application:
    """The application with /healthz, /readyz and /metrics; services add their routes to it.

    ``before_scrape`` refreshes gauges that are cheaper to read on demand than to keep
    current, such as consumer lag.
    """

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(_: web.Request) -> web.Response:
        failures = []
        for check in readiness:
            try:
                await check()
            except Exception as exc:  # a readiness probe reports, it never raises
                failures.append(f"{getattr(check, '__name__', 'check')}: {exc}")
        if failures:
            return error_response(503, "not ready", detail={"failures": failures})
        return web.json_response({"status": "ready"})

    async def metrics(_: web.Request) -> web.Response:
        if before_scrape is not None:
            try:
                await before_scrape()
            except Exception as exc:  # stale gauges beat a failed scrape
                log.warning("metrics refresh failed", error=str(exc))
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application(client_max_size=1 << 20, middlewares=[close_after_taken_body, json_errors])
    for path, probe in zip(PROBES, (healthz, readyz, metrics), strict=True):
        app.router.add_get(path, probe)
    return app


def tls_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """The server side of TLS from a PEM certificate chain and its key; None when neither is set.

    Either both or neither: a certificate without its key (or the reverse) is a mistake in
    the deployment, and serving plain HTTP instead would hide it.
    """
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ValueError(
            "TLS needs both a certificate and its key (GENOMHUB_HTTP_TLS_CERT, GENOMHUB_HTTP_TLS_KEY)"
        )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


class ServiceRequestHandler(RequestHandler):
    """aiohttp's connection handler, with a deadline on each request's head and small body,
    and requests its parser refused answered in the one error body.

    aiohttp (3.14) bounds a connection only by its keep-alive timeout, counted from the
    connection or from the last response, and not at all while a request is incomplete: a
    client that sends a header line a minute keeps its connection, and a few hundred such
    clients hold the server's sockets. Here a request must arrive whole, head and body,
    within ``head_timeout`` seconds of the connection's opening or, on a kept-alive
    connection, of its first byte; else the connection is closed. A body taken by
    :class:`BodyReaders` (an upload, hours long) leaves this deadline for its own idle and
    rate rules (:class:`Pace`) at the moment it is taken (:meth:`body_taken`).

    aiohttp's own answer to a request line or header it cannot parse (a header longer than
    8190 bytes, a control character in a header) is a text page that quotes the offending
    bytes, an ``Authorization`` header included, and its log line carries the same bytes in
    the exception. Here the answer names the kind of fault only, and the log line too.
    """

    def __init__(self, manager: web.Server, *, head_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._head_timeout = head_timeout
        self._deadline: asyncio.TimerHandle | None = None
        self._body: Any = None  # the payload of the newest request, until it is complete

    def _waiting_for_head(self) -> bool:
        return self._waiter is not None and not self._waiter.done() and not self._messages

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self._loop.call_later(self._head_timeout, self._overdue)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _overdue(self) -> None:
        self._deadline = None
        if self.transport is None:
            return
        what = "request head" if self._body is None else "request body"
        log.warning(f"{what} not complete in time; connection closed", seconds=self._head_timeout)
        self.force_close()

    def body_taken(self) -> None:
        """The newest request's body is read by a body reader, under its own :class:`Pace`."""
        self._body = None
        self._disarm()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        between_requests = self._waiting_for_head() and self._body is None
        queued = len(self._messages)
        super().data_received(data)
        if len(self._messages) > queued:  # these bytes completed a head
            self._body = self._messages[-1][1]
        if self._body is not None:
            if self._body.is_eof():  # ... and its body: the request is whole
                self._body = None
                self._disarm()
        elif between_requests and data:
            self._arm()  # the first bytes of a kept-alive connection's next request

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        self._body = None
        super().connection_lost(exc)

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if isinstance(exc, LineTooLong):
            title = "a request line or header is too long"
        elif isinstance(exc, BadHttpMethod):
            title = "not an HTTP request"
        elif status == 500:
            title = "internal error; the service has logged it"
        else:
            title = f"the request could not be parsed: {HTTPStatus(status).phrase.lower()}"
        if status == 500 and exc is not None:
            log.error("request failed", exc_info=exc)
        else:
            log.warning("malformed request refused", status=status, fault=type(exc).__name__ if exc else None)
        if request.writer.output_size > 0:
            raise ConnectionError("a response was already sent; the connection is dropped")
        response = error_response(status, title)
        response.force_close()
        return response


def body_taken(request: web.Request) -> None:
    """Tell the connection that ``request``'s body now has a reader with its own deadlines."""
    protocol = request.protocol
    if isinstance(protocol, ServiceRequestHandler):
        protocol.body_taken()


class ServiceServer(web.Server):
    r"""aiohttp's low-level server whose connections are :class:`ServiceRequestHandler`\ s."""

    def __init__(self, plain: web.Server, head_timeout: float) -> None:
        super().__init__(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            **plain._kwargs,
        )
        self.head_timeout = head_timeout

    def __call__(self) -> RequestHandler:
        return ServiceRequestHandler(self, loop=self._loop, head_timeout=self.head_timeout, **self._kwargs)


class ServiceRunner(web.AppRunner):
    """The runner of a service's application: :class:`ServiceServer` under it.

    aiohttp has no setting for the class of its connection handler, so the server the
    application makes is rebuilt with the same handler, request factory and arguments.
    """

    def __init__(self, app: web.Application, head_timeout: float = 30.0, **kwargs: Any) -> None:
        super().__init__(app, **{"access_log": None, **kwargs})
        self.head_timeout = head_timeout

    async def _make_server(self) -> web.Server:
        return ServiceServer(await super()._make_server(), self.head_timeout)


async def serve(
    web_app: web.Application,
    host: str,
    port: int,
    *,
    tls: ssl.SSLContext | None = None,
    head_timeout: float = 30.0,
) -> tuple[web.AppRunner, int]:
    """Serve ``web_app`` on ``host:port`` (0: any free port); the runner and the bound port.

    With ``tls`` the server speaks only HTTPS (asyncio bounds the handshake itself, 60 s; the
    head's deadline starts once it is done).
    """
    runner = ServiceRunner(web_app, head_timeout, keepalive_timeout=75.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=tls)
    await site.start()
    return runner, site.port


class BodyInterrupted(Exception):
    """The request body stopped before its end: the client went away, fell silent or crawled."""


@dataclass(frozen=True)
class Pace:
    """How slowly a body may arrive before the server stops waiting for it.

    ``idle_timeout``: seconds without a byte. ``min_rate``: bytes a second the client must
    keep up, judged over each ``grace`` seconds that the reader spends waiting for the
    client (0: no minimum). Only time spent waiting counts: when the server itself is the
    slow side (a busy disk), the kernel's buffer is full, every read returns at once, and
    the client is not blamed. Without a rate, a client that sends a byte just before each
    idle timeout holds its upload slot for ever: that is how eight trickles held every slot.
    """

    idle_timeout: float
    min_rate: float = 0.0
    grace: float = 60.0


class PaceKeeper:
    """One body's account of :class:`Pace`: call :meth:`waited` after every wait for bytes."""

    def __init__(self, pace: Pace) -> None:
        self.pace = pace
        self._waited = 0.0
        self._bytes = 0

    def waited(self, seconds: float, got: int) -> None:
        """Account ``seconds`` of waiting that brought ``got`` bytes; raise if the client crawls."""
        self._waited += seconds
        self._bytes += got
        if self.pace.min_rate <= 0 or self._waited < self.pace.grace:
            return
        rate = self._bytes / self._waited
        if rate < self.pace.min_rate:
            raise BodyInterrupted(
                f"slower than {self.pace.min_rate:g} bytes/s ({rate:.0f} over {self._waited:.0f} s)"
            )
        self._waited, self._bytes = 0.0, 0  # a new window: a fast start does not pay for a crawl


class SocketBody:
    """The rest of a request body, read from the connection's socket by a worker thread.

    Built on the event loop by :meth:`BodyReaders.take`, which has already taken the bytes aiohttp
    buffered and stopped the loop reading the socket; :meth:`readinto` then runs in the
    worker, on a duplicate of the socket's descriptor, until ``Content-Length`` is reached.
    """

    POLL_SECONDS = 0.5
    """How often a silent reader looks at :meth:`stop` and at its idle deadline."""

    def __init__(self, fileno: int, buffered: bytes, left: int, pace: Pace | float) -> None:
        self._socket = socket.socket(fileno=os.dup(fileno))
        self._socket.setblocking(False)  # as the loop had it: the descriptor's mode is shared
        self._poll = select.poll()
        self._poll.register(self._socket.fileno(), select.POLLIN)
        self._buffered = memoryview(buffered)
        self._left = left
        self._pace = PaceKeeper(pace if isinstance(pace, Pace) else Pace(idle_timeout=pace))
        self._stopped = False

    def readinto(self, view: memoryview) -> int:
        """Fill the start of ``view``; 0 at the end of the body, :class:`BodyInterrupted` before."""
        if self._buffered:
            n = min(len(view), len(self._buffered))
            view[:n] = self._buffered[:n]
            self._buffered = self._buffered[n:]
            return n
        if not self._left:
            return 0
        view = view[: self._left]
        idle_timeout = self._pace.pace.idle_timeout
        started = time.monotonic()
        deadline = started + idle_timeout
        while True:
            if self._stopped:
                raise BodyInterrupted("the server is stopping")
            try:
                got = self._socket.recv_into(view)
            except BlockingIOError:
                now = time.monotonic()
                idle = deadline - now
                if idle <= 0:
                    raise BodyInterrupted(f"no data for {idle_timeout:g} s") from None
                self._pace.waited(now - started, 0)
                started = now
                self._poll.poll(1000 * min(idle, self.POLL_SECONDS))
                continue
            except OSError as exc:  # the peer reset the connection
                raise BodyInterrupted(f"{type(exc).__name__}: {exc}") from exc
            if not got:
                raise BodyInterrupted(f"the connection closed {self._left} bytes before the end")
            self._left -= got
            self._pace.waited(time.monotonic() - started, got)
            return got

    def stop(self) -> None:
        """Make a waiting :meth:`readinto` give up (the handler was cancelled)."""
        self._stopped = True

    def close(self) -> None:
        self._socket.close()


class StreamBody:
    """The rest of a request body over TLS, read by the loop from aiohttp's stream for a worker.

    A TLS connection's bytes cannot be taken off the socket (they are encrypted, and the
    TLS state is the loop's), so here the loop decrypts and the worker asks it for each
    piece. The same :class:`Pace` applies; the cost is aiohttp's copies on the loop, which
    :class:`SocketBody` exists to avoid, so a plain-TCP service behind a TLS proxy is still
    the faster way to take uploads.
    """

    POLL_SECONDS = 0.5

    def __init__(
        self, content: Any, loop: asyncio.AbstractEventLoop, buffered: bytes, left: int, pace: Pace
    ) -> None:
        self._content = content
        self._loop = loop
        self._piece = memoryview(buffered)
        self._left = left
        self._pace = PaceKeeper(pace)
        self._pending: Any = None
        self._stopped = False

    def readinto(self, view: memoryview) -> int:
        if not self._piece:
            if not self._left:
                return 0
            self._piece = memoryview(self._next())
        n = min(len(view), len(self._piece))
        view[:n] = self._piece[:n]
        self._piece = self._piece[n:]
        return n

    def _next(self) -> bytes:
        idle_timeout = self._pace.pace.idle_timeout
        started = time.monotonic()
        deadline = started + idle_timeout
        while True:
            if self._stopped:
                raise BodyInterrupted("the server is stopping")
            if self._pending is None:
                self._pending = asyncio.run_coroutine_threadsafe(self._content.readany(), self._loop)
            now = time.monotonic()
            if now >= deadline:
                raise BodyInterrupted(f"no data for {idle_timeout:g} s")
            try:
                piece: bytes = self._pending.result(timeout=min(deadline - now, self.POLL_SECONDS))
            except TimeoutError:
                now = time.monotonic()
                self._pace.waited(now - started, 0)
                started = now
                continue
            except Exception as exc:  # the connection was lost or reset
                self._pending = None
                raise BodyInterrupted(f"{type(exc).__name__}: {exc}") from exc
            self._pending = None
            if not piece:
                raise BodyInterrupted(f"the connection closed {self._left} bytes before the end")
            piece = piece[: self._left]  # never more than Content-Length promised
            self._left -= len(piece)
            self._pace.waited(time.monotonic() - started, len(piece))
            return piece

    def stop(self) -> None:
        self._stopped = True
        if self._pending is not None:
            self._pending.cancel()

    def close(self) -> None:
        self.stop()


class ReadersBusy(Exception):
    """Every body reader is taken, or every one its holder may have; come back later (503)."""


class BodyReaders:
    """Worker threads that read request bodies, at most ``limit`` at once and ``per_holder`` each.

    A pool of their own, not the loop's default executor: a body holds its worker for as long
    as the upload lasts (hours on a slow link), and the default pool's few threads also serve
    every database call and the readiness probe, which must never wait behind uploads.

    ``per_holder`` is what keeps one region from starving the others: its uploads, however
    slow, take at most that many of the ``limit`` readers (with five regions, ``per_holder``
    × 5 ≤ ``limit`` leaves every region its share).
    """

    def __init__(self, limit: int, per_holder: int | None = None) -> None:
        self.limit = limit
        self.per_holder = min(per_holder or limit, limit)
        self._active = 0
        self._held: Tally[str] = Tally()
        self._pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="body")

    @property
    def busy(self) -> bool:
        return self._active >= self.limit

    def busy_for(self, holder: str) -> str | None:
        """Why a body of ``holder`` cannot be taken now, or None if it can."""
        if self._held[holder] >= self.per_holder:
            return f"{self.per_holder} uploads of {holder} are being received"
        if self.busy:
            return f"{self.limit} uploads are being received"
        return None

    async def take(
        self,
        request: web.Request,
        consume: Callable[[Callable[[memoryview], int]], T],
        pace: Pace | float,
        holder: str = "",
    ) -> T:
        """Run ``consume(readinto)`` in a worker over the request's body.

        Why not aiohttp's own reading: it receives the body on the event loop in pieces of up
        to 256 KiB, copies each again in the parser and once more to join them, about 0.7
        CPU-seconds a GB in the one thread that also serves every other request. Here, on
        plain TCP, the worker receives straight into the caller's buffers (``consume`` is
        typically an ``Intake``), about 0.2 CPU-seconds a GB off the loop, which is what lets
        an upload run at close to md5's rate on two cores. The price is the connection: the
        loop stops reading it, so it is closed after the response
        (:func:`close_after_taken_body`). Over TLS the loop must decrypt, so the worker is fed
        from aiohttp's stream instead (:class:`StreamBody`), with the same ``pace``.

        Needs ``Content-Length`` (the caller refuses a request without it). ``holder`` is whose
        upload it is, counted against ``per_holder``.
        """
        pace = pace if isinstance(pace, Pace) else Pace(idle_timeout=pace)
        length = request.content_length
        if length is None:
            raise ValueError("a body is taken only with a Content-Length")
        refusal = self.busy_for(holder)
        if refusal is not None:
            raise ReadersBusy(refusal)
        transport = request.transport
        raw = transport.get_extra_info("socket") if transport is not None else None
        if transport is None or raw is None:
            raise BodyInterrupted("the connection closed before the body")
        tls = transport.get_extra_info("sslcontext") is not None
        buffered = bytearray()
        try:
            while piece := request.content.read_nowait():  # what aiohttp has already received
                buffered += piece
        except Exception as exc:  # the connection was lost before the handler ran
            raise BodyInterrupted(f"{type(exc).__name__}: {exc}") from exc
        request[BODY_TAKEN] = True
        body_taken(request)
        body: SocketBody | StreamBody
        if tls:
            head = bytes(buffered[:length])
            body = StreamBody(request.content, asyncio.get_running_loop(), head, length - len(head), pace)
        else:
            transport.pause_reading()  # from here on the socket's bytes are the worker's alone
            body = SocketBody(raw.fileno(), bytes(buffered), length - len(buffered), pace)
        self._active += 1
        self._held[holder] += 1
        work = functools.partial(contextvars.copy_context().run, consume, body.readinto)
        worker = asyncio.get_running_loop().run_in_executor(self._pool, work)
        try:
            return await asyncio.shield(worker)
        except asyncio.CancelledError:
            body.stop()
            while not worker.done():  # never leave the worker reading behind our back
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait([worker])
            raise
        finally:
            self._active -= 1
            self._held[holder] -= 1
            if not self._held[holder]:
                del self._held[holder]
            body.close()
            # The body is dealt with: aiohttp must not wait for its rest (it would linger 10 s
            # reading it after an interrupted one), and the connection closes after the answer.
            request.content.feed_eof()
            if not tls:
                transport.pause_reading()  # feed_eof resumes reading; the rest is never read


@web.middleware
async def close_after_taken_body(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Close the connection after a response to a request whose body :class:`BodyReaders` took."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if request.get(BODY_TAKEN):
            exc.force_close()
        raise
    if request.get(BODY_TAKEN):
        response.force_close()
    return response
