"""Each service's HTTP side: health, readiness, Prometheus metrics, and its own API routes.

One aiohttp application per service process, run beside the Kafka consumer in the same
event loop. Faust's own web server is switched off, so there is one HTTP stack to learn.
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
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, LineTooLong
from aiohttp.web_protocol import RequestHandler
from mode import Service as ModeService
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from shared.telemetry import get_logger

ReadinessCheck = Callable[[], Awaitable[None]]
T = TypeVar("T")
log = get_logger(__name__)
BODY_TAKEN = web.RequestKey("body_taken", bool)

EVENTS_PROCESSED = Counter("genomhub_events_processed", "Events handled successfully", ["service", "event"])
EVENTS_FAILED = Counter("genomhub_events_failed", "Events whose handling failed", ["service", "event"])
DLQ_SENDS = Counter("genomhub_dlq_sends", "Records sent to a dead-letter topic", ["service", "topic"])
LATENCY = Histogram("genomhub_processing_seconds", "Time to handle one event", ["service", "event"])
CONSUMER_LAG = Gauge("genomhub_consumer_lag", "Records not yet consumed", ["service", "topic", "partition"])


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


ERROR_MEDIA_TYPE = "application/json"
_ERROR_CLASSES: dict[int, type[web.HTTPError]] = {}


def error_body(
    status: int,
    error: str,
    problems: list[FieldProblem] | None = None,
    detail: dict[str, Any] | None = None,
) -> str:
    """The JSON text of :class:`ErrorBody`: the one error body, built in one place."""
    return ErrorBody(
        status=status, error=error, problems=problems or [], detail=detail or {}
    ).model_dump_json()


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
) -> web.HTTPException:
    """The exception a handler raises to answer ``status`` with the one error body."""
    return _error_class(status)(
        text=error_body(status, error, problems, detail), content_type=ERROR_MEDIA_TYPE, headers=headers
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


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering requests its parser refused in the one error body.

    aiohttp's own answer to a request line or header it cannot parse (a header longer than
    8190 bytes, a control character in a header) is a text page that quotes the offending
    bytes, an ``Authorization`` header included, and its log line carries the same bytes in
    the exception. Here the answer names the kind of fault only, and the log line too.
    """

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


class GuardedServer(web.Server):
    r"""aiohttp's low-level server whose connections are :class:`GuardedRequestHandler`\ s."""

    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(self, loop=self._loop, **self._kwargs)


class ServiceRunner(web.AppRunner):
    """The runner of a service's application: :class:`GuardedServer` under it.

    aiohttp has no setting for the class of its connection handler, so the server the
    application makes is rebuilt with the same handler, request factory and arguments.
    """

    def __init__(self, app: web.Application) -> None:
        super().__init__(app, access_log=None)

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        return GuardedServer(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            **made._kwargs,
        )


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
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


class HttpServer(ModeService):
    """Serves an aiohttp application for as long as the service's worker runs."""

    def __init__(self, web_app: web.Application, host: str, port: int) -> None:
        super().__init__()
        self.web_app = web_app
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def on_start(self) -> None:
        self._runner = ServiceRunner(self.web_app)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def on_stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class BodyInterrupted(Exception):
    """The request body stopped before its end: the client went away or fell silent."""


class SocketBody:
    """The rest of a request body, read from the connection's socket by a worker thread.

    Built on the event loop by :meth:`BodyReaders.take`, which has already taken the bytes aiohttp
    buffered and stopped the loop reading the socket; :meth:`readinto` then runs in the
    worker, on a duplicate of the socket's descriptor, until ``Content-Length`` is reached.
    """

    POLL_SECONDS = 0.5
    """How often a silent reader looks at :meth:`stop` and at its idle deadline."""

    def __init__(self, fileno: int, buffered: bytes, left: int, idle_timeout: float) -> None:
        self._socket = socket.socket(fileno=os.dup(fileno))
        self._socket.setblocking(False)  # as the loop had it: the descriptor's mode is shared
        self._poll = select.poll()
        self._poll.register(self._socket.fileno(), select.POLLIN)
        self._buffered = memoryview(buffered)
        self._left = left
        self._idle_timeout = idle_timeout
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
        deadline = time.monotonic() + self._idle_timeout
        while True:
            if self._stopped:
                raise BodyInterrupted("the server is stopping")
            try:
                got = self._socket.recv_into(view)
            except BlockingIOError:
                idle = deadline - time.monotonic()
                if idle <= 0:
                    raise BodyInterrupted(f"no data for {self._idle_timeout:g} s") from None
                self._poll.poll(1000 * min(idle, self.POLL_SECONDS))
                continue
            except OSError as exc:  # the peer reset the connection
                raise BodyInterrupted(f"{type(exc).__name__}: {exc}") from exc
            if not got:
                raise BodyInterrupted(f"the connection closed {self._left} bytes before the end")
            self._left -= got
            return got

    def stop(self) -> None:
        """Make a waiting :meth:`readinto` give up (the handler was cancelled)."""
        self._stopped = True

    def close(self) -> None:
        self._socket.close()


class ReadersBusy(Exception):
    """Every body reader is taken; the client should come back later (503, Retry-After)."""


class BodyReaders:
    """Worker threads that read request bodies off their sockets, at most ``limit`` at once.

    A pool of their own, not the loop's default executor: a body holds its worker for as long
    as the upload lasts (hours on a slow link), and the default pool's few threads also serve
    every database call and the readiness probe, which must never wait behind uploads.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._active = 0
        self._pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="body")

    @property
    def busy(self) -> bool:
        return self._active >= self.limit

    async def take(
        self, request: web.Request, consume: Callable[[Callable[[memoryview], int]], T], idle_timeout: float
    ) -> T:
        """Run ``consume(readinto)`` in a worker over the request's body, read off the socket.

        Why not aiohttp's own reading: it receives the body on the event loop in pieces of up
        to 256 KiB, copies each again in the parser and once more to join them, about 0.7
        CPU-seconds a GB in the one thread that also serves every other request. Here the
        worker receives straight into the caller's buffers (``consume`` is typically an
        ``Intake``), about 0.2 CPU-seconds a GB off the loop, which is what lets an upload
        run at close to md5's rate on two cores. The price is the connection: the loop
        stops reading it, so it is closed after the response (:func:`close_after_taken_body`).

        Needs ``Content-Length`` (the caller refuses a request without it) and plain TCP,
        which is what the services serve; TLS ends in front of them.
        """
        length = request.content_length
        if length is None:
            raise ValueError("a body is taken only with a Content-Length")
        if self.busy:
            raise ReadersBusy(f"{self.limit} uploads are being received")
        transport = request.transport
        raw = transport.get_extra_info("socket") if transport is not None else None
        if transport is None or raw is None:
            raise BodyInterrupted("the connection closed before the body")
        if transport.get_extra_info("sslcontext") is not None:
            raise RuntimeError("bodies are read off plain TCP only; TLS ends in front of the service")
        buffered = bytearray()
        try:
            while piece := request.content.read_nowait():  # what aiohttp has already received
                buffered += piece
        except Exception as exc:  # the connection was lost before the handler ran
            raise BodyInterrupted(f"{type(exc).__name__}: {exc}") from exc
        transport.pause_reading()  # from here on the socket's bytes are the worker's alone
        request[BODY_TAKEN] = True
        body = SocketBody(raw.fileno(), bytes(buffered), length - len(buffered), idle_timeout)
        self._active += 1
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
            body.close()
            request.content.feed_eof()  # the body is dealt with: aiohttp must not wait for it
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
