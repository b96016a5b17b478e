"""Request bodies read off the socket by worker threads (shared.http.BodyReaders), in-process.

A real aiohttp server on loopback with the services' own application, and raw sockets as
clients, so a body can be cut, stalled or left hanging exactly where a test wants it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from shared.http import BodyInterrupted, BodyReaders, Pace, ReadersBusy, SocketBody, make_web
from shared.storage import Intake

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


@pytest.fixture
async def server() -> AsyncIterator[tuple[int, Seen]]:
    seen = Seen()
    readers = BodyReaders(limit=1)

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
            await readers.take(request, consume, Pace(idle_timeout=1.0))
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
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
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
