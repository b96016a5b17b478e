"""The 1 Mb, 30x sample with its truth, run once through the local backend for the module."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.harmoniser.inputs import SampleReads, arrange_lanes
from services.harmoniser.local import LocalBackend
from shared.synthetic import SimulatedPairs, simulate_paired_reads, synthetic_reference
from tests.postgres import postgres_server

__all__ = ["postgres_server"]


@dataclass(frozen=True)
class LocalRun:
    reads: SampleReads
    truth: SimulatedPairs
    outdir: Path
    fasta: Path
    cache: Path


@pytest.fixture(scope="session")
def harmoniser_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("harmoniser-cache")


@pytest.fixture(scope="session")
def reference(harmoniser_cache: Path) -> Path:
    return synthetic_reference(harmoniser_cache)


@pytest.fixture(scope="session")
def local_run(
    tmp_path_factory: pytest.TempPathFactory, reference: Path, harmoniser_cache: Path
) -> Iterator[LocalRun]:
    """The issue's correctness case: 1 Mb, 30x, 0.2% errors, 5% duplicates, 100 SNPs, 1/3 hom."""
    data = tmp_path_factory.mktemp("reads")
    truth = simulate_paired_reads(
        reference, data, prefix="S1", coverage=30, error_rate=0.002, duplicate_fraction=0.05, snps=100, seed=7
    )
    files = {p.name: p.as_uri() for p in (truth.fastq_1, truth.fastq_2)}
    reads = SampleReads("P1", "S1", tuple(arrange_lanes(files)))
    backend = LocalBackend(reference, harmoniser_cache, threads=2, sarek_version="3.5.1")
    rundir = tmp_path_factory.mktemp("run")
    outdir = asyncio.run(backend.run(reads, rundir, False, lambda _pgid: None))
    yield LocalRun(reads, truth, outdir, reference, harmoniser_cache)
