"""Archived files are checked decrypted, as they stream: the same findings as their plaintext,
no plaintext left behind, and a file that does not decrypt rejected with its reason."""

from __future__ import annotations

import io
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.validator.checks import check_file
from services.validator.sources import ArchivedFile, as_fifo, tail, use_archive
from services.validator.validation import InProcess, InputFile, validate
from shared.encryption import CIPHER_SEGMENT_SIZE, load_archive_key, write_key_pair
from shared.events import AnalysisType, FileRole, Verdict
from shared.headers import HeaderStore
from shared.storage import ArchiveReader, seal
from tests.unit.validator import corpus

PROFILE = "synthetic-v1"
PASSPHRASE = "validator test passphrase"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_key_pair(tmp_path_factory.mktemp("key"), PASSPHRASE)


@pytest.fixture
def archive(
    tmp_path: Path, keys: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> Iterator[ArchiveReader]:
    """This process's archive, and a scratch folder of its own to see what is left in it."""
    reader = ArchiveReader(
        HeaderStore((tmp_path / "store").as_uri(), (tmp_path / "headers").as_uri()),
        load_archive_key(*keys, PASSPHRASE),
    )
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    use_archive(reader)
    yield reader
    use_archive(None)


def archived(reader: ArchiveReader, path: Path, name: str | None = None) -> ArchivedFile:
    url = f"{reader.headers.store}/syddanmark/S1/{name or path.name}"
    size = seal(url, [path.read_bytes()], reader.headers, reader.key.public)
    return ArchivedFile(url, size)


def body(source: ArchivedFile) -> Path:
    return Path(source.url.removeprefix("file://"))


def test_an_archived_pair_validates_as_its_plaintext(tmp_path: Path, archive: ArchiveReader) -> None:
    pair = corpus.fastq_pair(tmp_path, n=3000)
    plain = [InputFile(p.name, p.as_uri(), FileRole.RAW_READS) for p in pair]
    sealed = [archived(archive, p) for p in pair]
    encrypted = [
        InputFile(p.name, s.url, FileRole.RAW_READS, archived_size=s.size)
        for p, s in zip(pair, sealed, strict=True)
    ]
    settings = corpus.validator_settings()
    want = validate(plain, settings, AnalysisType.WGS, InProcess(), PROFILE, corpus.synthetic_fasta())
    got = validate(encrypted, settings, AnalysisType.WGS, InProcess(), PROFILE, corpus.synthetic_fasta())
    assert got.verdict is want.verdict is Verdict.ACCEPTED
    assert [o.findings for o in got.files] == [o.findings for o in want.files]
    assert got.raw_bases == want.raw_bases > 0


@pytest.mark.parametrize("kind", ["cram", "vcf"])
def test_htslib_checks_a_decrypted_copy_that_is_gone_afterwards(
    tmp_path: Path, archive: ArchiveReader, kind: str
) -> None:
    if kind == "cram":
        path = corpus.good_cram(tmp_path, corpus.synthetic_fasta())
    else:
        path = corpus.write_vcf(tmp_path, "S1.vcf.gz", corpus.vcf_text(), index=False)
    want = check_file(path.name, path.as_uri(), PROFILE, True, corpus.synthetic_fasta())
    got = check_file(path.name, archived(archive, path), PROFILE, True, corpus.synthetic_fasta())
    assert got == want and got.detected_type == kind and got.reads == want.reads
    assert list((tmp_path / "scratch").iterdir()) == []


def corrupt(reader: ArchiveReader, source: ArchivedFile) -> None:
    data = bytearray(body(source).read_bytes())
    data[CIPHER_SEGMENT_SIZE + 100] ^= 1  # segment 1
    body(source).write_bytes(bytes(data))


def truncate(reader: ArchiveReader, source: ArchivedFile) -> None:
    body(source).write_bytes(body(source).read_bytes()[: 2 * CIPHER_SEGMENT_SIZE])


def other_key(reader: ArchiveReader, source: ArchivedFile) -> None:
    stranger = write_key_pair(body(source).parent / "stranger", "another passphrase")
    key = load_archive_key(*stranger, "another passphrase")
    seal(source.url, [b"x" * source.size], reader.headers, key.public)


def replayed(reader: ArchiveReader, source: ArchivedFile) -> None:
    twin = f"{source.url}.twin"
    seal(twin, [b"y" * source.size], reader.headers, reader.key.public)
    reader.headers.write(source.url, reader.headers.read(twin))


def headerless(reader: ArchiveReader, source: ArchivedFile) -> None:
    reader.headers.remove(source.url)


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        (corrupt, "segment 1 of the body fails its Poly1305 tag: corrupted"),
        (truncate, "the body ends after"),
        (other_key, "does not open with archive key"),
        (replayed, "the header belongs to another file"),
        (headerless, "no Crypt4GH header"),
    ],
)
def test_a_file_that_does_not_decrypt_is_rejected_with_its_reason(
    tmp_path: Path, archive: ArchiveReader, spoil: Callable[[ArchiveReader, ArchivedFile], None], reason: str
) -> None:
    pair = corpus.fastq_pair(tmp_path, n=6000)  # several segments, so a later one can fail
    sealed = [archived(archive, p) for p in pair]
    spoil(archive, sealed[0])
    files = [
        InputFile(p.name, s.url, FileRole.RAW_READS, archived_size=s.size)
        for p, s in zip(pair, sealed, strict=True)
    ]
    outcome = validate(
        files, corpus.validator_settings(), AnalysisType.WGS, InProcess(), PROFILE, corpus.synthetic_fasta()
    )
    assert outcome.verdict is Verdict.REJECTED
    first = outcome.files[0].findings
    assert first.detected_type == "unreadable" and first.reads == 0 and first.metrics.get("reads") is None
    [unreadable] = [p for p in first.problems if p.code == "archive.unreadable"]
    assert reason in unreadable.message and unreadable.severity == "error"
    assert not outcome.files[0].accepted
    assert list((tmp_path / "scratch").iterdir()) == []


def test_the_tail_of_an_archived_file_is_a_seek_away(tmp_path: Path, archive: ArchiveReader) -> None:
    data = bytes(range(256)) * 2000
    (tmp_path / "x.bin").write_bytes(data)
    assert tail(archived(archive, tmp_path / "x.bin"), 38) == data[-38:]


def tar_of(tmp_path: Path, members: int) -> Path:
    path = tmp_path / "S1.spring"
    with tarfile.open(path, "w") as tar:
        for i in range(members):
            blob = bytes([i % 251]) * 100_000
            info = tarfile.TarInfo(f"work/part{i}.bin")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


def test_a_tool_that_streams_reads_a_pipe_and_nothing_is_written(
    tmp_path: Path, archive: ArchiveReader
) -> None:
    """``tar -x`` is what ``spring -d`` runs on its input: it gets every member through the pipe."""
    source = archived(archive, tar_of(tmp_path, 8))
    out = tmp_path / "out"
    out.mkdir()
    with as_fifo(source, ".spring") as pipe:
        assert pipe.is_fifo()
        subprocess.run(["tar", "-xf", str(pipe), "-C", str(out)], check=True)
    assert sorted(p.name for p in (out / "work").iterdir()) == [f"part{i}.bin" for i in range(8)]
    assert (out / "work" / "part7.bin").read_bytes() == bytes([7]) * 100_000
    assert list((tmp_path / "scratch").iterdir()) == []


def test_a_pipe_that_stops_decrypting_outranks_what_the_tool_made_of_it(
    tmp_path: Path, archive: ArchiveReader
) -> None:
    source = archived(archive, tar_of(tmp_path, 8))
    corrupt(archive, source)
    with pytest.raises(Exception, match="segment 1 of the body fails"), as_fifo(source) as pipe:
        subprocess.run(["tar", "-tf", str(pipe)], capture_output=True, check=True)


def test_a_tool_that_never_opens_the_pipe_leaves_no_writer_waiting(
    tmp_path: Path, archive: ArchiveReader
) -> None:
    source = archived(archive, tar_of(tmp_path, 2))
    with as_fifo(source) as pipe:
        assert pipe.exists()
    assert list((tmp_path / "scratch").iterdir()) == []
