"""Streaming writes: digests in one pass, atomic commit, nothing left behind on failure."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.storage import SizeLimitExceeded, copy_into, write_chunks


def chunks(data: bytes, size: int = 1000) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_write_computes_size_and_both_digests(tmp_path: Path) -> None:
    data = bytes(range(256)) * 4099
    stored = write_chunks((tmp_path / "a" / "f.bin").as_uri(), chunks(data))
    assert (tmp_path / "a" / "f.bin").read_bytes() == data
    assert stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.md5 == hashlib.md5(data).hexdigest()
    copied = copy_into(stored.url, (tmp_path / "b.bin").as_uri())
    assert (copied.size, copied.sha256, copied.md5) == (stored.size, stored.sha256, stored.md5)


def test_a_failed_write_leaves_no_file_that_looks_complete(tmp_path: Path) -> None:
    def broken() -> Iterator[bytes]:
        yield b"x" * 10
        raise ConnectionError("client went away")

    with pytest.raises(ConnectionError):
        write_chunks((tmp_path / "f.bin").as_uri(), broken())
    assert list(tmp_path.iterdir()) == []


def test_size_limit(tmp_path: Path) -> None:
    with pytest.raises(SizeLimitExceeded):
        write_chunks((tmp_path / "f.bin").as_uri(), chunks(b"y" * 5000), max_size=4999)
    assert list(tmp_path.iterdir()) == []
