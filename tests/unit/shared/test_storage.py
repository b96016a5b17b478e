"""Streaming writes: digests in one pass, recycled buffers, atomic commit, nothing lost or left."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.encryption import (
    CIPHER_SEGMENT_SIZE,
    SEGMENT_SIZE,
    ArchiveKey,
    BodyDecryptor,
    BodyEncryptor,
    HeaderKeyMismatch,
    SegmentAuthenticationError,
    body_size,
    write_key_pair,
)
from shared.storage import (
    ALIGN,
    CHUNK,
    MAX_PARTS,
    MIN_PART,
    RING,
    WRITES_AHEAD,
    ArchiveWriter,
    AtomicWrite,
    EncryptingSink,
    Intake,
    Lane,
    LocalFile,
    ReadInto,
    SizeLimitExceeded,
    copy_into,
    open_archived,
    part_size_for,
)
from tests.support import ARCHIVE_PASSPHRASE, crypt4gh_decrypt, crypt4gh_encrypt

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


def _plaintext(url: str, size: int, writer: ArchiveWriter) -> bytes:
    assert writer.key is not None
    with open_archived(url, size, writer.headers, writer.key) as archived:
        return archived.read()


def test_atomic_write_and_copy(tmp_path: Path, archive_writer: ArchiveWriter) -> None:
    write = AtomicWrite((tmp_path / "a" / "f.bin").as_uri(), archive_writer)
    write.take(source(DATA))
    stored = write.commit()
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["f.bin"]
    assert (tmp_path / "a" / "f.bin").stat().st_size == body_size(len(DATA))
    assert DATA[:SEGMENT_SIZE] not in (tmp_path / "a" / "f.bin").read_bytes()
    assert (stored.size, stored.sha256, stored.md5) == (
        len(DATA),
        hashlib.sha256(DATA).hexdigest(),
        hashlib.md5(DATA).hexdigest(),
    )
    assert _plaintext(stored.url, stored.size, archive_writer) == DATA
    copied = copy_into(_file(tmp_path / "src.bin", DATA), (tmp_path / "b.bin").as_uri(), archive_writer)
    assert (copied.size, copied.sha256, copied.md5) == (stored.size, stored.sha256, stored.md5)
    assert archive_writer.headers.read(copied.url) != archive_writer.headers.read(stored.url)


def test_an_archived_file_with_its_header_decrypts_with_the_crypt4gh_command_line(
    tmp_path: Path, archive_writer: ArchiveWriter, genomhub_home: Path
) -> None:
    """Interoperability: ``cat header body | crypt4gh decrypt --sk archive.sec`` is the file."""
    stored = copy_into(_file(tmp_path / "src.bin", DATA), (tmp_path / "f.bin").as_uri(), archive_writer)
    whole = archive_writer.headers.read(stored.url) + (tmp_path / "f.bin").read_bytes()
    assert crypt4gh_decrypt(whole, genomhub_home / "keys" / "archive.sec", ARCHIVE_PASSPHRASE) == DATA


def test_a_failed_copy_leaves_no_file_that_looks_complete(
    tmp_path: Path, archive_writer: ArchiveWriter
) -> None:
    with pytest.raises(SizeLimitExceeded):
        copy_into(
            _file(tmp_path / "src.bin", DATA),
            (tmp_path / "out" / "f.bin").as_uri(),
            archive_writer,
            max_size=4999,
        )
    assert list((tmp_path / "out").iterdir()) == []
    assert not archive_writer.headers.exists((tmp_path / "out" / "f.bin").as_uri())


class Positions:
    """A sink that notes where each write lands and how long it is."""

    def __init__(self, position: int = 0) -> None:
        self.position = position
        self.writes: list[tuple[int, int]] = []
        self.body = bytearray()

    def write(self, chunk: memoryview) -> None:
        self.writes.append((self.position, len(chunk)))
        self.body += chunk
        self.position += len(chunk)

    def sync(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.mark.parametrize("piece", [65_536, 1_000_003])
def test_the_write_lane_encrypts_in_aligned_writes(piece: int, archive_key: ArchiveKey) -> None:
    """Cipher chunks are no multiple of 4096, yet every write but the last starts and ends on a
    4096 boundary (O_DIRECT), and the body decrypts to the plaintext."""
    inner = Positions()
    sink = EncryptingSink(inner, BodyEncryptor(archive_key.public))
    intake = Intake()
    intake.take(source(DATA, piece=piece), sink)
    sink.finish()
    sink.sync()
    assert len(inner.body) == body_size(len(DATA))
    assert all(at % ALIGN == 0 and size % ALIGN == 0 for at, size in inner.writes[:-1])
    assert len(inner.writes) > 2
    decrypted = BodyDecryptor(sink.header, io.BytesIO(bytes(inner.body)), archive_key, len(DATA)).read()
    assert decrypted == DATA


def test_writes_of_any_length_make_one_body(archive_key: ArchiveKey) -> None:
    """Chunks that split segments anywhere (and one longer than a chunk) still seal whole
    segments in order, the short last one at the finish."""
    inner = Positions()
    sink = EncryptingSink(inner, BodyEncryptor(archive_key.public))
    at = 0
    for size in (1, SEGMENT_SIZE - 1, SEGMENT_SIZE + 1, 3, 200_000, CHUNK + 5, 12_345):
        sink.write(memoryview(DATA[at : at + size]))
        at += size
    sink.finish()
    sink.sync()
    assert sink.position == sink.stored == at
    assert BodyDecryptor(sink.header, io.BytesIO(bytes(inner.body)), archive_key, at).read() == DATA[:at]


def test_sealed_buffers_are_written_by_a_lane_of_their_own_over_a_few_buffers(
    archive_key: ArchiveKey,
) -> None:
    """The disk's time is not added to the cipher's: writes run in a thread that is neither
    the caller's nor the sealing lane's, from the same few buffers whatever the length."""
    inner = Recorder()
    sink = EncryptingSink(inner, BodyEncryptor(archive_key.public))
    sealing: set[int] = set()
    seal = sink.write

    def write(chunk: memoryview) -> None:
        sealing.add(threading.get_ident())
        seal(chunk)

    sink.write = write  # type: ignore[method-assign]
    Intake().take(source(DATA * 3), sink)
    sink.finish()
    sink.sync()
    sink.close()
    assert len(inner.threads) == 1 and not inner.threads & (sealing | {threading.get_ident()})
    assert len(inner.buffers) <= WRITES_AHEAD + 1
    body = b"".join(inner.chunks)
    assert BodyDecryptor(sink.header, io.BytesIO(body), archive_key, 3 * len(DATA)).read() == DATA * 3


@pytest.mark.parametrize("fail_at", [0, 2])
def test_a_failed_write_of_a_sealed_buffer_is_raised_and_nothing_is_written_after_it(
    fail_at: int, archive_key: ArchiveKey
) -> None:
    inner = Recorder(fail_at=fail_at)
    sink = EncryptingSink(inner, BodyEncryptor(archive_key.public))
    with pytest.raises(OSError, match="No space"):
        Intake().take(source(DATA * 3), sink)
    for after in (sink.finish, sink.sync):  # the body has a hole: it never looks complete
        with pytest.raises(OSError, match="No space"):
            after()
    sink.close()  # the failure was told already
    assert len(inner.chunks) == fail_at  # a later write would land where the failed one belonged


def test_a_failed_write_of_the_last_sealed_buffers_fails_the_finish(archive_key: ArchiveKey) -> None:
    """A write that fails while the last chunks are still being sealed is raised by the
    finish, which writes nothing more."""
    inner = Recorder(fail_at=0)
    sink = EncryptingSink(inner, BodyEncryptor(archive_key.public))
    sink.write(memoryview(DATA[: 2 * CHUNK]))  # sent to the disk lane, its failure not yet seen
    with pytest.raises(OSError, match="No space"):
        sink.finish()
    with pytest.raises(OSError, match="No space"):
        sink.write(memoryview(DATA[2 * CHUNK :]))
    sink.close()
    assert inner.chunks == []


def test_an_unfinished_body_keeps_whole_segments_only(archive_key: ArchiveKey) -> None:
    """An interrupted stream keeps its whole segments; the short tail is dropped, not sealed, so
    the body goes on later under the same data key."""
    inner = Positions()
    encryptor = BodyEncryptor(archive_key.public)
    sink = EncryptingSink(inner, encryptor)
    Intake().take(source(DATA[: 3 * SEGMENT_SIZE + 100]), sink)
    sink.sync()
    sink.close()
    assert (sink.stored, sink.position, len(inner.body)) == (
        3 * SEGMENT_SIZE,
        3 * SEGMENT_SIZE,
        3 * CIPHER_SEGMENT_SIZE,
    )
    resumed = EncryptingSink(inner, BodyEncryptor.continuing(sink.header, archive_key, sink.stored))
    Intake().take(source(DATA[sink.stored :]), resumed)
    resumed.finish()
    resumed.sync()
    assert BodyDecryptor(sink.header, io.BytesIO(bytes(inner.body)), archive_key, len(DATA)).read() == DATA


def test_a_crypt4gh_file_is_decrypted_on_intake_and_stored_under_a_fresh_key(
    tmp_path: Path, archive_writer: ArchiveWriter, archive_key: ArchiveKey, genomhub_home: Path
) -> None:
    """A file the `crypt4gh` command line encrypted to the archive key: its plaintext's digests,
    stored under a data key of the archive's own (a header other than the file's)."""
    encrypted = crypt4gh_encrypt(DATA, genomhub_home / "keys" / "archive.pub")
    stored = copy_into(_file(tmp_path / "in.c4gh", encrypted), (tmp_path / "f.bin").as_uri(), archive_writer)
    assert (stored.size, stored.sha256, stored.md5) == (
        len(DATA),
        hashlib.sha256(DATA).hexdigest(),
        hashlib.md5(DATA).hexdigest(),
    )
    assert _plaintext(stored.url, stored.size, archive_writer) == DATA
    assert not encrypted.startswith(archive_writer.headers.read(stored.url))


def test_a_crypt4gh_file_for_another_key_or_damaged_is_refused(
    tmp_path: Path, archive_writer: ArchiveWriter, genomhub_home: Path
) -> None:
    other = write_key_pair(tmp_path / "other", "another key")[1]
    with pytest.raises(HeaderKeyMismatch, match="another key"):
        copy_into(
            _file(tmp_path / "theirs.c4gh", crypt4gh_encrypt(DATA, other)),
            (tmp_path / "a.bin").as_uri(),
            archive_writer,
        )
    damaged = bytearray(crypt4gh_encrypt(DATA, genomhub_home / "keys" / "archive.pub"))
    damaged[len(damaged) // 2] ^= 1
    with pytest.raises(SegmentAuthenticationError, match="Poly1305"):
        copy_into(
            _file(tmp_path / "damaged.c4gh", bytes(damaged)), (tmp_path / "b.bin").as_uri(), archive_writer
        )
    assert not (tmp_path / "a.bin").exists() and not (tmp_path / "b.bin").exists()


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
