"""Streaming writes: digests in one pass, recycled buffers, atomic commit, nothing lost or left."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.storage import (
    CHUNK,
    MAX_PARTS,
    MIN_PART,
    RING,
    AtomicWrite,
    Intake,
    Lane,
    LocalFile,
    ReadInto,
    SizeLimitExceeded,
    copy_into,
    part_size_for,
)

DATA = os.urandom(9 * CHUNK // 4 + 12_345)  # several chunks and a ragged end


def source(data: bytes, piece: int = 65_536, fail: Exception | None = None) -> ReadInto:
    """A socket-like source: at most ``piece`` bytes a call, then ``fail`` (or the end)."""
    stream = io.BytesIO(data)

    def readinto(view: memoryview) -> int:
        got = stream.readinto(view[:piece])
        if not got and fail is not None:
            raise fail
        return got

    return readinto


class Recorder:
    """A sink that keeps copies of its chunks, notes its threads and buffers, and can fail."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.position = 0
        self.chunks: list[bytes] = []
        self.threads: set[int] = set()
        self.buffers: set[int] = set()
        self.fail_at = fail_at
        self.calls = 0

    def write(self, chunk: memoryview) -> None:
        self.calls += 1
        if self.calls - 1 == self.fail_at:  # once, as a disk that fills and then frees again
            raise OSError(28, "No space left on device")
        self.threads.add(threading.get_ident())
        self.buffers.add(id(chunk.obj))
        self.chunks.append(bytes(chunk))
        self.position += len(chunk)

    def sync(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_digests_match_hashlib_across_sources() -> None:
    intake = Intake()
    intake.take(source(DATA[:1000]))
    intake.take(source(DATA[1000:], piece=1 << 20))
    assert intake.size == len(DATA)
    assert intake.hexdigests() == (hashlib.sha256(DATA).hexdigest(), hashlib.md5(DATA).hexdigest())


def test_writes_run_in_order_in_one_thread_off_the_caller_over_a_few_buffers() -> None:
    sink = Recorder()
    Intake().take(source(DATA), sink)
    assert b"".join(sink.chunks) == DATA
    assert len(sink.threads) == 1 and threading.get_ident() not in sink.threads
    assert len(sink.buffers) <= RING  # memory stays flat: the same buffers come round again


def test_chunks_end_on_chunk_boundaries_of_the_file() -> None:
    """A resumed file's first chunk brings the write to a boundary, so the rest can be direct."""
    sink = Recorder()
    sink.position = 1_000_001
    Intake().take(source(DATA), sink)
    assert len(sink.chunks[0]) == CHUNK - 1_000_001
    assert all(len(c) == CHUNK for c in sink.chunks[1:-1])


def test_a_source_failure_keeps_what_arrived_before_it() -> None:
    sink = Recorder()
    intake = Intake()
    with pytest.raises(ConnectionResetError):
        intake.take(source(DATA[:1_500_000], fail=ConnectionResetError("client went away")), sink)
    assert b"".join(sink.chunks) == DATA[:1_500_000]
    assert intake.size == 1_500_000
    assert intake.hexdigests()[1] == hashlib.md5(DATA[:1_500_000]).hexdigest()


def test_a_failed_write_is_raised_and_nothing_is_written_after_it() -> None:
    sink = Recorder(fail_at=1)
    with pytest.raises(OSError, match="No space"):
        Intake().take(source(DATA), sink)
    assert len(sink.chunks) == 1  # a later chunk would land where the failed one belonged


def test_a_failed_write_outranks_a_source_failure() -> None:
    with pytest.raises(OSError, match="No space"):
        Intake().take(source(DATA, fail=ConnectionResetError("gone")), Recorder(fail_at=2))


def test_size_limit_stops_before_the_excess_is_written() -> None:
    sink = Recorder()
    with pytest.raises(SizeLimitExceeded):
        Intake(max_size=CHUNK + 10).take(source(DATA), sink)
    assert sum(map(len, sink.chunks)) <= CHUNK + 10


@pytest.mark.parametrize("offset", [0, 4096, 1_000_001])
def test_local_file_direct_and_cached_writes_give_the_same_bytes(tmp_path: Path, offset: int) -> None:
    """Aligned chunks go direct, a ragged head and tail through the cache: the file is whole."""
    path = tmp_path / "f.bin"
    path.write_bytes(DATA[:offset])
    sink = LocalFile(str(path), offset)
    Intake().take(source(DATA[offset:]), sink)
    sink.sync()
    sink.close()
    sink.close()  # closing twice never closes someone else's descriptor
    assert path.read_bytes() == DATA


def test_atomic_write_and_copy(tmp_path: Path) -> None:
    write = AtomicWrite((tmp_path / "a" / "f.bin").as_uri())
    write.take(source(DATA))
    stored = write.commit()
    assert (tmp_path / "a" / "f.bin").read_bytes() == DATA
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["f.bin"]
    assert (stored.size, stored.sha256, stored.md5) == (
        len(DATA),
        hashlib.sha256(DATA).hexdigest(),
        hashlib.md5(DATA).hexdigest(),
    )
    copied = copy_into(stored.url, (tmp_path / "b.bin").as_uri())
    assert (copied.size, copied.sha256, copied.md5) == (stored.size, stored.sha256, stored.md5)


def test_a_failed_copy_leaves_no_file_that_looks_complete(tmp_path: Path) -> None:
    with pytest.raises(SizeLimitExceeded):
        copy_into(_file(tmp_path / "src.bin", DATA), (tmp_path / "out" / "f.bin").as_uri(), max_size=4999)
    assert list((tmp_path / "out").iterdir()) == []


def _file(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return path.as_uri()


def test_lanes_off_the_critical_path_yield_the_cpu() -> None:
    seen: dict[str, int] = {}

    def note(name: str) -> Callable[[memoryview], object]:
        return lambda _: seen.setdefault(name, os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    pace, yielding = Lane("md5", note("pace")), Lane("sha256", note("yielding"), yielding=True)
    try:
        pace.feed(memoryview(b"")).result()
        yielding.feed(memoryview(b"")).result()
    finally:
        pace.close()
        yielding.close()
    assert seen == {"pace": mine, "yielding": min(mine + Lane.YIELDING_NICE, 19)}


def test_s3_parts_grow_only_for_a_file_that_would_need_more_than_10000() -> None:
    assert part_size_for(0, 8 << 20) == 8 << 20
    assert part_size_for(10_000 * (8 << 20), 8 << 20) == 8 << 20
    big = 500 << 30
    size = part_size_for(big, 8 << 20)
    assert size % (1 << 20) == 0 and -(-big // size) <= MAX_PARTS < -(-big // (size - (1 << 20)))
    assert part_size_for(1, 1) == MIN_PART
