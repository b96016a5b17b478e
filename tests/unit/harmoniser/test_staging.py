"""The harmoniser's decrypted inputs live in the run's scratch space only while the run does:
gone after a success, a failure, a cancellation (a lost lease cancels the same way, see
test_leases) and an input that does not decrypt; never a plaintext copy in the archive."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from services.harmoniser.harmonise import INPUTS
from services.harmoniser.steps import PipelineFailed
from shared.encryption import CIPHER_SEGMENT_SIZE
from shared.events import FileRole, HarmonisationPolicy, Validated
from shared.storage import ArchiveWriter
from shared.synthetic import simulate_paired_reads
from tests.unit.harmoniser.factory import archive_at, checked, validated
from tests.unit.harmoniser.test_jobs import broken_pair, local_harmoniser


def event(tmp_path: Path, pair: list[Path], sample: str) -> Validated:
    files = [checked(p, FileRole.RAW_READS, "fastq", archive=archive_at(tmp_path)) for p in pair]
    return validated(sample, sample, files, HarmonisationPolicy.INTERNATIONAL, needs_harmonisation=True)


def plaintext_in_archive(tmp_path: Path, pair: list[Path]) -> list[Path]:
    """Files under the archive whose bytes are an input's plaintext."""
    inputs = {p.read_bytes() for p in pair}
    return [f for f in (tmp_path / "store").rglob("*") if f.is_file() and f.read_bytes() in inputs]


async def test_a_run_reads_decrypted_copies_that_are_gone_when_it_succeeds(
    tmp_path: Path, reference: Path, harmoniser_cache: Path, archive_writer: ArchiveWriter
) -> None:
    sim = simulate_paired_reads(reference, tmp_path / "in", prefix="T1", coverage=0.5, snps=5, seed=4)
    pair = [sim.fastq_1, sim.fastq_2]
    rundir = tmp_path / "run"
    seen: list[bytes] = []

    def on_process(pgid: int | None) -> None:
        if pgid is not None and not seen:
            seen.append((rundir / INPUTS / sim.fastq_1.name).read_bytes())

    outputs, _ = await local_harmoniser(tmp_path, reference, harmoniser_cache, archive_writer).execute(
        event(tmp_path, pair, "T1"), rundir, False, on_process
    )
    assert seen == [sim.fastq_1.read_bytes()]  # the tools read the plaintext
    assert {o.kind for o in outputs} >= {"cram", "vcf"}
    assert not (rundir / INPUTS).exists()
    assert plaintext_in_archive(tmp_path, pair) == []


async def test_a_failed_run_leaves_no_decrypted_input(
    tmp_path: Path, reference: Path, harmoniser_cache: Path, archive_writer: ArchiveWriter
) -> None:
    pair = broken_pair(tmp_path / "in", reference)
    rundir = tmp_path / "run"
    with pytest.raises(PipelineFailed, match="exited with status"):
        await local_harmoniser(tmp_path, reference, harmoniser_cache, archive_writer).execute(
            event(tmp_path, pair, "T2"), rundir, False, lambda _pgid: None
        )
    assert (rundir / "logs").exists() and not (rundir / INPUTS).exists()


async def test_a_cancelled_run_leaves_no_decrypted_input(
    tmp_path: Path, reference: Path, harmoniser_cache: Path, archive_writer: ArchiveWriter
) -> None:
    sim = simulate_paired_reads(reference, tmp_path / "in", prefix="T3", coverage=20, snps=5, seed=5)
    rundir = tmp_path / "run"
    started = asyncio.Event()
    run = asyncio.create_task(
        local_harmoniser(tmp_path, reference, harmoniser_cache, archive_writer).execute(
            event(tmp_path, [sim.fastq_1, sim.fastq_2], "T3"), rundir, False, lambda _pgid: started.set()
        )
    )
    await asyncio.wait_for(started.wait(), 60)
    assert (rundir / INPUTS / sim.fastq_2.name).exists()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert not (rundir / INPUTS).exists()


async def test_an_input_that_does_not_decrypt_fails_the_run_with_its_reason(
    tmp_path: Path, reference: Path, harmoniser_cache: Path, archive_writer: ArchiveWriter
) -> None:
    sim = simulate_paired_reads(reference, tmp_path / "in", prefix="T4", coverage=2, snps=5, seed=6)
    submitted = event(tmp_path, [sim.fastq_1, sim.fastq_2], "T4")
    body = Path(submitted.files[1].url.removeprefix("file://"))
    data = bytearray(body.read_bytes())
    data[CIPHER_SEGMENT_SIZE + 50] ^= 1
    body.write_bytes(bytes(data))
    rundir = tmp_path / "run"
    with pytest.raises(
        PipelineFailed, match=f"{sim.fastq_2.name} cannot be read from the archive: segment 1"
    ):
        await local_harmoniser(tmp_path, reference, harmoniser_cache, archive_writer).execute(
            submitted, rundir, False, lambda _p: None
        )
    assert not (rundir / INPUTS).exists()
