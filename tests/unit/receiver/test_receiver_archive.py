"""Resumable partial uploads: encrypted as they arrive, a prefix of whole segments is kept
under the file's one data key, digests are rebuilt, nothing looks complete early."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from services.receiver.archive import Layout, OffsetMismatch, PartialUpload, arrived, commit, exists
from shared.encryption import CIPHER_SEGMENT_SIZE, SEGMENT_SIZE, ArchiveKey, body_size
from shared.storage import ArchiveWriter, SizeLimitExceeded, open_archived

DATA = bytes(range(256)) * 40_000  # 10 MB: several parallel-hashed chunks


def _plaintext(url: str, size: int, writer: ArchiveWriter, key: ArchiveKey) -> bytes:
    with open_archived(url, size, writer.headers, key) as archived:
        return archived.read()


def test_layout(tmp_path: Path) -> None:
    layout = Layout(tmp_path.as_uri())
    assert (
        layout.final("hovedstaden", "S1", "sub", "R1.fastq.gz")
        == f"{tmp_path.as_uri()}/hovedstaden/S1/sub/R1.fastq.gz"
    )
    assert layout.partial("sub", "R1.fastq.gz") == f"{tmp_path.as_uri()}/.incoming/sub/R1.fastq.gz"


def test_resume_rebuilds_digests_over_the_whole_file(
    tmp_path: Path, archive_writer: ArchiveWriter, archive_key: ArchiveKey
) -> None:
    layout = Layout(tmp_path.as_uri())
    partial = layout.partial("sub", "R1")
    first = PartialUpload(partial, 0, len(DATA), archive_writer)
    first.take(io.BytesIO(DATA[:3_000_000]).readinto)
    first.close()  # the client went away: its whole segments stay, the tail short of one goes
    kept = 3_000_000 // SEGMENT_SIZE * SEGMENT_SIZE
    assert arrived(partial) == first.arrived == kept
    assert archive_writer.headers.exists(partial)

    with pytest.raises(OffsetMismatch) as caught:
        PartialUpload(partial, 3_000_000, len(DATA), archive_writer)
    assert caught.value.arrived == kept

    # Another replica's PartialUpload: the data key comes from the stored header.
    second = PartialUpload(partial, kept, len(DATA), archive_writer, total=len(DATA), ends_file=True)
    second.take(io.BytesIO(DATA[kept:]).readinto)
    second.close()
    result = second.result()
    assert (result.size, result.sha256, result.md5) == (
        len(DATA),
        hashlib.sha256(DATA).hexdigest(),
        hashlib.md5(DATA).hexdigest(),
    )
    final = layout.final("r", "s", "sub", "R1")
    assert not exists(final)  # nothing in the archive proper until committed
    commit(partial, final, archive_writer.headers)
    assert exists(final) and not exists(partial)
    assert archive_writer.headers.exists(final) and not archive_writer.headers.exists(partial)
    assert Path(final[len("file://") :]).stat().st_size == body_size(len(DATA))
    assert _plaintext(final, len(DATA), archive_writer, archive_key) == DATA


def test_offset_zero_starts_over_under_a_new_data_key(tmp_path: Path, archive_writer: ArchiveWriter) -> None:
    partial = Layout(tmp_path.as_uri()).partial("sub", "R1")
    upload = PartialUpload(partial, 0, 10 * SEGMENT_SIZE, archive_writer)
    upload.take(io.BytesIO(b"x" * 2 * SEGMENT_SIZE).readinto)
    upload.close()
    header = archive_writer.headers.read(partial)
    again = PartialUpload(partial, 0, 100, archive_writer, total=10, ends_file=True)
    again.take(io.BytesIO(b"y" * 10).readinto)
    again.close()
    assert archive_writer.headers.read(partial) != header
    assert Path(partial[len("file://") :]).stat().st_size == body_size(10)
    assert again.arrived == 10
    assert again.result().sha256 == hashlib.sha256(b"y" * 10).hexdigest()


def test_a_receiver_dying_mid_write_leaves_a_prefix(
    tmp_path: Path, archive_writer: ArchiveWriter, archive_key: ArchiveKey
) -> None:
    partial = Layout(tmp_path.as_uri()).partial("sub", "R1")
    upload = PartialUpload(partial, 0, len(DATA), archive_writer)
    upload.take(io.BytesIO(DATA[:5_000_000]).readinto)
    # The process died once its disk lane's writes had landed (waited for here by the close:
    # the lane writes from a thread of its own, so touching the file before would race it),
    # and the file system kept its last segment's length without all of its bytes.
    upload.close()
    path = Path(partial[len("file://") :])
    with path.open("r+b") as torn:
        torn.seek(-(CIPHER_SEGMENT_SIZE // 2), io.SEEK_END)
        torn.write(b"\0" * (CIPHER_SEGMENT_SIZE // 2))
    counted = arrived(partial)
    assert counted % SEGMENT_SIZE == 0 and counted > 0
    with pytest.raises(OffsetMismatch) as caught:  # the segment ending in zeros fails its tag
        PartialUpload(partial, counted, len(DATA), archive_writer)
    have = caught.value.arrived
    assert have == counted - SEGMENT_SIZE and arrived(partial) == have
    resumed = PartialUpload(partial, have, len(DATA), archive_writer, total=len(DATA), ends_file=True)
    resumed.take(io.BytesIO(DATA[have:]).readinto)
    resumed.close()
    assert resumed.result().md5 == hashlib.md5(DATA).hexdigest()
    assert _plaintext(partial, len(DATA), archive_writer, archive_key) == DATA


def test_a_prefix_without_its_header_is_not_resumed(tmp_path: Path, archive_writer: ArchiveWriter) -> None:
    partial = Layout(tmp_path.as_uri()).partial("sub", "R1")
    upload = PartialUpload(partial, 0, len(DATA), archive_writer)
    upload.take(io.BytesIO(DATA[: 2 * SEGMENT_SIZE]).readinto)
    upload.close()
    archive_writer.headers.remove(partial)
    with pytest.raises(OffsetMismatch) as caught:
        PartialUpload(partial, 2 * SEGMENT_SIZE, len(DATA), archive_writer)
    assert caught.value.arrived == 0


def test_size_limit(tmp_path: Path, archive_writer: ArchiveWriter) -> None:
    upload = PartialUpload(Layout(tmp_path.as_uri()).partial("sub", "R1"), 0, 10, archive_writer)
    with pytest.raises(SizeLimitExceeded):
        upload.take(io.BytesIO(b"z" * 11).readinto)
