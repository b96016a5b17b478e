"""Request bodies read off the socket by worker threads (shared.http.BodyReaders), in-process.

A real aiohttp server on loopback with the services' own application, and raw sockets as
clients, so a body can be cut, stalled or left hanging exactly where a test wants it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from shared.http import (
    BodyInterrupted,
    BodyReaders,
    Pace,
    PaceKeeper,
    ReadersBusy,
    SocketBody,
    make_web,
    serve,
    tls_context,
)
from shared.storage import Intake
from tests.tls import make_server

DATA = os.urandom(3_000_000)


@dataclass
class Seen:
    """What the handler saw: the body's digest, or how it ended, and its own task."""

    md5: str | None = None
    failure: str | None = None
    worker_failure: str | None = None
    still_reading: bool | None = None
    size: int = 0
    task: asyncio.Task[object] | None = None
    worker_done: threading.Event = field(default_factory=threading.Event)


def body_app(seen: Seen, readers: BodyReaders, pace: Pace) -> web.Application:
    """The services' application with a PUT /body that takes its body as the receiver does."""

    async def put(request: web.Request) -> web.Response:
        intake = Intake()

        def consume(readinto: Callable[[memoryview], int]) -> None:
            try:
                intake.take(readinto)
            except BodyInterrupted as exc:
                seen.worker_failure = str(exc)
                raise
            finally:
                seen.size = intake.size
                seen.worker_done.set()

        try:
            if not readers.busy:
                seen.task = asyncio.current_task()
            await readers.take(request, consume, pace, holder=request.headers.get("X-Holder", ""))
        except ReadersBusy:
            return web.json_response({"busy": True}, status=503)
        except BodyInterrupted as exc:
            seen.failure = str(exc)
            return web.json_response({"arrived": intake.size}, status=400)
        finally:
            assert request.transport is not None
            seen.still_reading = request.transport.is_reading()
        seen.md5 = intake.hexdigests()[1]
        return web.json_response({"md5": seen.md5})

    async def ping(_: web.Request) -> web.Response:
        return web.json_response({"pong": True})

    app = make_web([])
    app.router.add_put("/body", put)
    app.router.add_get("/ping", ping)
    return app


@pytest.fixture
async def server() -> AsyncIterator[tuple[int, Seen]]:
    seen = Seen()
    runner, port = await serve(body_app(seen, BodyReaders(limit=1), Pace(idle_timeout=1.0)), "127.0.0.1", 0)
    try:
        yield port, seen
    finally:
        await runner.cleanup()


def request_head(length: int, extra: str = "") -> bytes:
    return f"PUT /body HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n{extra}\r\n".encode()


async def exchange(port: int, payload: bytes, close_after: bool = False) -> bytes:
    """Send ``payload`` on a fresh connection and return everything the server answers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    if close_after:
        writer.close()
        return b""
    answer = await asyncio.wait_for(reader.read(), timeout=10)  # to EOF: the server closes
    writer.close()
    return answer


async def test_a_whole_body_arrives_and_the_connection_is_closed_after(server: tuple[int, Seen]) -> None:
    port, seen = server
    answer = await exchange(port, request_head(len(DATA)) + DATA)
    assert answer.startswith(b"HTTP/1.1 200")
    assert b"Connection: close" in answer
    assert seen.md5 == hashlib.md5(DATA).hexdigest()
    assert seen.still_reading is False  # what follows the body is never read by the loop


async def test_bytes_after_the_body_are_not_taken_for_it(server: tuple[int, Seen]) -> None:
    """A pipelined request after the body is left unread and unanswered; the client sends it again.

    Closing with unread bytes makes the kernel reset the connection, which may cost the client
    the PUT's answer too; a resumable upload asks HEAD. Uploaders do not pipeline after a PUT.
    """
    port, seen = server
    pipelined = request_head(len(DATA)) + DATA + b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"
    try:
        answer = await exchange(port, pipelined)
    except ConnectionResetError:
        answer = b""
    assert answer.count(b"HTTP/1.1") <= 1 and b"pong" not in answer
    assert seen.md5 == hashlib.md5(DATA).hexdigest()


async def test_a_client_that_goes_away_leaves_what_it_sent(server: tuple[int, Seen]) -> None:
    port, seen = server
    await exchange(port, request_head(len(DATA)) + DATA[:1_234_567], close_after=True)
    assert await asyncio.to_thread(seen.worker_done.wait, 10)
    for _ in range(100):
        if seen.failure is not None:
            break
        await asyncio.sleep(0.05)
    assert seen.failure is not None and "before the end" in seen.failure
    assert seen.size == 1_234_567


async def test_a_silent_client_times_out_with_what_it_sent(server: tuple[int, Seen]) -> None:
    port, seen = server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request_head(len(DATA)) + DATA[:100_000])
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 400") and b'"arrived": 100000' in answer
    assert seen.failure is not None and "no data for 1 s" in seen.failure


async def test_a_cancelled_handler_stops_its_worker(server: tuple[int, Seen]) -> None:
    port, seen = server
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request_head(len(DATA)) + DATA[:10_000])
    await writer.drain()
    for _ in range(100):
        if seen.task is not None:
            break
        await asyncio.sleep(0.02)
    assert seen.task is not None
    await asyncio.sleep(0.1)
    seen.task.cancel()
    seen.task.cancel()  # twice, as a shutdown may: the worker is still waited for
    assert await asyncio.to_thread(seen.worker_done.wait, 5)
    assert seen.worker_failure == "the server is stopping"  # stopped, not timed out
    writer.close()


async def test_bodies_beyond_the_limit_are_turned_away(server: tuple[int, Seen]) -> None:
    port, seen = server
    _, stalled = await asyncio.open_connection("127.0.0.1", port)
    stalled.write(request_head(len(DATA)) + DATA[:10_000])  # holds the only reader
    await stalled.drain()
    for _ in range(100):
        if seen.task is not None:
            break
        await asyncio.sleep(0.02)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request_head(len(DATA)) + DATA)
    await writer.drain()
    answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 503")
    stalled.close()
    assert await asyncio.to_thread(seen.worker_done.wait, 5)


async def test_other_requests_keep_their_connection(server: tuple[int, Seen]) -> None:
    port, _ = server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(2):
        writer.write(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        status = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
        assert status.startswith(b"HTTP/1.1 200") and b"Connection: close" not in status
        length = int(status.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
    writer.close()


def test_socket_body_reads_the_buffered_bytes_first_and_stops_at_the_length() -> None:
    near, far = socket.socketpair()
    try:
        far.sendall(b"world!!")
        body = SocketBody(near.fileno(), b"hello ", 5, Pace(idle_timeout=1))
        out = bytearray(100)
        got = body.readinto(memoryview(out))
        got += body.readinto(memoryview(out)[got:])
        assert bytes(out[:got]) == b"hello world"
        assert body.readinto(memoryview(out)) == 0  # the rest belongs to the next request
        body.close()
        assert near.recv(10) == b"!!"  # the worker read a duplicate; the connection is intact
    finally:
        near.close()
        far.close()


# --- over TLS, with a minimum rate, and per holder ------------------------------------------


@dataclass
class TlsServer:
    port: int
    seen: Seen
    client: ssl.SSLContext


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[TlsServer]:
    """The same application served over TLS, 2 readers, 1 a holder, 200 kB/s after 1 s."""
    files = make_server(tmp_path)
    seen = Seen()
    app = body_app(
        seen, BodyReaders(limit=2, per_holder=1), Pace(idle_timeout=2.0, min_rate=200_000, grace=1.0)
    )
    runner, port = await serve(app, "127.0.0.1", 0, tls=tls_context(files.cert, files.key))
    try:
        yield TlsServer(port, seen, ssl.create_default_context(cafile=str(files.ca)))
    finally:
        await runner.cleanup()


async def tls_exchange(server: TlsServer, payload: bytes, trickle: bytes = b"") -> bytes:
    """Send ``payload`` over TLS, then ``trickle`` a byte every 0.2 s; the server's answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=server.client)
    writer.write(payload)
    await writer.drain()
    answering = asyncio.create_task(reader.read())  # to EOF: the server closes after answering
    for i in range(len(trickle)):
        done, _ = await asyncio.wait([answering], timeout=0.2)
        if done:
            break
        writer.write(trickle[i : i + 1])
        await writer.drain()
    answer = await asyncio.wait_for(answering, timeout=10)
    writer.close()
    return answer


async def test_a_whole_body_arrives_over_tls(tls_server: TlsServer) -> None:
    answer = await tls_exchange(tls_server, request_head(len(DATA)) + DATA)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert tls_server.seen.md5 == hashlib.md5(DATA).hexdigest()


async def test_a_silent_tls_client_times_out_with_what_it_sent(tls_server: TlsServer) -> None:
    answer = await tls_exchange(tls_server, request_head(len(DATA)) + DATA[:300_000])
    assert answer.startswith(b"HTTP/1.1 400") and b'"arrived": 300000' in answer
    assert tls_server.seen.failure is not None
    assert "no data for 2 s" in tls_server.seen.failure or "slower than" in tls_server.seen.failure


async def test_a_crawling_tls_body_is_cut_off_after_the_grace(tls_server: TlsServer) -> None:
    started = time.monotonic()
    answer = await tls_exchange(
        tls_server, request_head(len(DATA)) + DATA[:100_000], trickle=DATA[100_000:100_100]
    )
    assert time.monotonic() - started < 5
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert tls_server.seen.failure is not None and "slower than 200000 bytes/s" in tls_server.seen.failure
    assert tls_server.seen.size >= 100_000


async def test_a_holder_gets_at_most_its_share_of_readers(tls_server: TlsServer) -> None:
    _, held = await asyncio.open_connection("127.0.0.1", tls_server.port, ssl=tls_server.client)
    held.write(request_head(len(DATA), "X-Holder: hovedstaden\r\n") + DATA[:10_000])
    await held.drain()
    for _ in range(100):
        if tls_server.seen.task is not None:
            break
        await asyncio.sleep(0.02)
    reader, writer = await asyncio.open_connection("127.0.0.1", tls_server.port, ssl=tls_server.client)
    writer.write(request_head(len(DATA), "X-Holder: hovedstaden\r\n") + DATA)
    await writer.drain()
    same = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    writer.close()
    assert same.startswith(b"HTTP/1.1 503"), same[:200]
    other = await tls_exchange(tls_server, request_head(len(DATA), "X-Holder: sjaelland\r\n") + DATA)
    assert other.startswith(b"HTTP/1.1 200"), other[:200]
    held.close()


def test_the_rate_is_judged_only_over_time_spent_waiting_for_the_client() -> None:
    keeper = PaceKeeper(Pace(idle_timeout=60, min_rate=1000, grace=10))
    for _ in range(100):  # the server was busy between reads: fast reads are never a crawl
        keeper.waited(0.001, 100)
    keeper.waited(9.0, 10_000)
    keeper.waited(0.9, 0)  # 10 s of waiting, 2000 B/s: kept, and a new window starts
    keeper.waited(5.0, 10)
    with pytest.raises(BodyInterrupted, match="slower than 1000 bytes/s"):
        keeper.waited(5.0, 10)  # this window: 20 bytes in 10 s, a fast start does not pay for it
    unlimited = PaceKeeper(Pace(idle_timeout=60))
    unlimited.waited(1e6, 1)


async def test_a_tls_client_that_goes_away_leaves_what_it_sent(tls_server: TlsServer) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", tls_server.port, ssl=tls_server.client)
    writer.write(request_head(len(DATA)) + DATA[:1_234_567])
    await writer.drain()
    await asyncio.sleep(0.3)
    writer.transport.abort()
    assert await asyncio.to_thread(tls_server.seen.worker_done.wait, 10)
    assert tls_server.seen.worker_failure is not None
    assert tls_server.seen.size == 1_234_567
