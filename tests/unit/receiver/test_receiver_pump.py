"""shared.storage's parallel digests and read-ahead pump, as the receiver relies on them."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import AsyncIterator

import pytest

from shared.storage import Digests, pump

DATA = os.urandom(9 << 20)


def test_parallel_digests_match_hashlib() -> None:
    digests = Digests()
    written: list[bytes] = []
    for i in range(0, len(DATA), 3 << 20):
        digests.update(DATA[i : i + (3 << 20)], written.append)
    digests.update(b"tail", written.append)
    whole = DATA + b"tail"
    assert digests.size == len(whole)
    assert digests.hexdigests() == (hashlib.sha256(whole).hexdigest(), hashlib.md5(whole).hexdigest())
    assert b"".join(written) == whole


class Sink:
    """A file stand-in that notes which threads wrote to it, and can fail like a full disk."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.chunks: list[bytes] = []
        self.threads: set[int] = set()
        self.fail_at = fail_at

    def write(self, chunk: bytes) -> None:
        if self.fail_at is not None and len(self.chunks) == self.fail_at:
            raise OSError(28, "No space left on device")
        self.threads.add(threading.get_ident())
        self.chunks.append(chunk)


def test_writes_run_in_order_in_one_thread_off_the_caller() -> None:
    sink = Sink()
    digests = Digests()
    for i in range(0, len(DATA), 1 << 20):
        digests.update(DATA[i : i + (1 << 20)], sink.write)  # a new bound method every call
    digests.drain()
    assert b"".join(sink.chunks) == DATA
    assert len(sink.threads) == 1 and threading.get_ident() not in sink.threads


def test_a_failed_write_is_raised_not_lost() -> None:
    sink = Sink(fail_at=2)
    digests = Digests()
    with pytest.raises(OSError, match="No space"):
        for i in range(0, len(DATA), 1 << 20):
            digests.update(DATA[i : i + (1 << 20)], sink.write)
        digests.drain()


async def pieces(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_pump_gathers_pieces_in_order() -> None:
    chunks: list[bytes] = []
    fed = await pump(pieces(DATA), chunks.append, chunk_size=1 << 20)
    assert fed == len(DATA)
    assert b"".join(chunks) == DATA
    assert all(len(c) == 1 << 20 for c in chunks[:-1])


async def test_pump_stops_on_a_source_failure_after_the_chunk_in_flight() -> None:
    async def broken() -> AsyncIterator[bytes]:
        async for piece in pieces(DATA[: 3 << 20]):
            yield piece
        raise ConnectionResetError("client went away")

    chunks: list[bytes] = []
    with pytest.raises(ConnectionResetError):
        await pump(broken(), chunks.append, chunk_size=1 << 20)
    assert b"".join(chunks) == DATA[: 3 << 20]


async def test_pump_feeds_what_arrived_before_a_cut() -> None:
    async def cut() -> AsyncIterator[bytes]:
        async for piece in pieces(DATA[:1_500_000]):
            yield piece
        raise ConnectionResetError("client went away")

    chunks: list[bytes] = []
    with pytest.raises(ConnectionResetError):
        await pump(cut(), chunks.append, chunk_size=1 << 20)
    assert b"".join(chunks) == DATA[:1_500_000]


async def test_pump_raises_a_sink_failure() -> None:
    def full_disk(chunk: bytes) -> None:
        raise OSError("no space left")

    with pytest.raises(OSError, match="no space"):
        await pump(pieces(DATA), full_disk, chunk_size=1 << 20)
