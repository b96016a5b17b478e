"""Resumable partial uploads: a prefix is kept, digests are rebuilt, nothing looks complete early."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from services.receiver.archive import Layout, OffsetMismatch, PartialUpload, arrived, commit, exists
from shared.storage import SizeLimitExceeded

DATA = bytes(range(256)) * 40_000  # 10 MB: several parallel-hashed chunks


def test_layout(tmp_path: Path) -> None:
    layout = Layout(tmp_path.as_uri())
    assert (
        layout.final("hovedstaden", "S1", "sub", "R1.fastq.gz")
        == f"{tmp_path.as_uri()}/hovedstaden/S1/sub/R1.fastq.gz"
    )
    assert layout.partial("sub", "R1.fastq.gz") == f"{tmp_path.as_uri()}/.incoming/sub/R1.fastq.gz"


def test_resume_rebuilds_digests_over_the_whole_file(tmp_path: Path) -> None:
    layout = Layout(tmp_path.as_uri())
    partial = layout.partial("sub", "R1")
    first = PartialUpload(partial, 0, len(DATA))
    first.take(io.BytesIO(DATA[:3_000_000]).readinto)
    first.close()  # the client went away: what arrived stays
    assert arrived(partial) == 3_000_000

    with pytest.raises(OffsetMismatch) as caught:
        PartialUpload(partial, 2_000_000, len(DATA))
    assert caught.value.arrived == 3_000_000

    second = PartialUpload(partial, 3_000_000, len(DATA))
    second.take(io.BytesIO(DATA[3_000_000:]).readinto)
    second.close()
    result = second.result()
    assert (result.size, result.sha256, result.md5) == (
        len(DATA),
        hashlib.sha256(DATA).hexdigest(),
        hashlib.md5(DATA).hexdigest(),
    )
    final = layout.final("r", "s", "sub", "R1")
    assert not exists(final)  # nothing in the archive proper until committed
    commit(partial, final)
    assert exists(final) and not exists(partial)
    assert Path(final[len("file://") :]).read_bytes() == DATA


def test_offset_zero_starts_over(tmp_path: Path) -> None:
    partial = Layout(tmp_path.as_uri()).partial("sub", "R1")
    upload = PartialUpload(partial, 0, 100)
    upload.take(io.BytesIO(b"x" * 50).readinto)
    upload.close()
    again = PartialUpload(partial, 0, 100)
    again.take(io.BytesIO(b"y" * 10).readinto)
    again.close()
    assert arrived(partial) == 10
    assert again.result().sha256 == hashlib.sha256(b"y" * 10).hexdigest()


def test_a_receiver_dying_mid_write_leaves_a_prefix(tmp_path: Path) -> None:
    partial = Layout(tmp_path.as_uri()).partial("sub", "R1")
    upload = PartialUpload(partial, 0, len(DATA))
    upload.take(io.BytesIO(DATA[:5_000_000]).readinto)  # never closed: the process is gone
    have = arrived(partial)
    assert DATA.startswith(Path(partial[len("file://") :]).read_bytes()[:have])
    resumed = PartialUpload(partial, have, len(DATA))
    resumed.take(io.BytesIO(DATA[have:]).readinto)
    resumed.close()
    assert resumed.result().md5 == hashlib.md5(DATA).hexdigest()


def test_size_limit(tmp_path: Path) -> None:
    upload = PartialUpload(Layout(tmp_path.as_uri()).partial("sub", "R1"), 0, 10)
    with pytest.raises(SizeLimitExceeded):
        upload.take(io.BytesIO(b"z" * 11).readinto)
