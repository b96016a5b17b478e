"""Real harmoniser processes on the real broker, fed hand-built validated events.

The validator is built beside the harmoniser, so these tests publish the validated events
each policy's decision produces, from real simulated reads and clinical files.
"""

from __future__ import annotations

import asyncio
import gzip
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pysam
import pytest

from shared import telemetry
from shared.bus import publish
from shared.config import StateSettings
from shared.envelope import decode, normalise_headers
from shared.events import Harmonised, Validated
from shared.storage import ArchiveReader
from shared.synthetic import simulate_paired_reads
from shared.topics import topic_name
from tests.postgres import postgres_server
from tests.support import Process, free_port, genomhub, records
from tests.unit.harmoniser.factory import PASSPHRASE, archive_at
from tools.stack.environment import StackSettings

__all__ = ["postgres_server"]


@dataclass(frozen=True)
class Inputs:
    fastq: list[Path]
    big_fastq: list[Path]
    broken_fastq: list[Path]
    clinical_vcf: Path
    clinical_tbi: Path


@pytest.fixture(scope="session")
def archive(genomhub_home: Path) -> ArchiveReader:
    """The session's archive key where the harmoniser looks by default, its passphrase given
    to the processes the tests start through the environment."""
    os.environ["GENOMHUB_ARCHIVE_KEY_PASSPHRASE"] = PASSPHRASE
    return archive_at(genomhub_home)


@pytest.fixture(scope="session")
def harmoniser_inputs(genomhub_home: Path) -> Inputs:
    reference = StackSettings().reference()
    inbox = StateSettings().state_dir / "store" / "harmoniser-inbox"  # read only inside the archive
    small = simulate_paired_reads(reference, inbox / "small", prefix="H1", coverage=2, snps=20, seed=5)
    big = simulate_paired_reads(reference, inbox / "big", prefix="H2", coverage=12, snps=20, seed=6)
    broken = simulate_paired_reads(reference, inbox / "broken", prefix="H3", coverage=0.5, snps=5, seed=7)
    lines = gzip.decompress(broken.fastq_2.read_bytes()).splitlines(keepends=True)
    broken.fastq_2.write_bytes(gzip.compress(b"".join(lines[4:])))  # mates no longer match
    text = inbox / "clinical.vcf"
    text.write_text(
        "##fileformat=VCFv4.2\n##contig=<ID=chr1,length=600000>\n##source=nf-core/sarek\n"
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tH1\n"
        + "".join(
            f"{s.contig}\t{s.pos}\t.\t{s.ref}\t{s.alt}\t50\tPASS\t.\tGT\t{s.genotype}\n"
            for s in small.snps
            if s.contig == "chr1"
        )
    )
    vcf = Path(pysam.tabix_index(str(text), preset="vcf", force=True))
    return Inputs(
        [small.fastq_1, small.fastq_2],
        [big.fastq_1, big.fastq_2],
        [broken.fastq_1, broken.fastq_2],
        vcf,
        Path(f"{vcf}.tbi"),
    )


SHORT_LEASE = {"GENOMHUB_HARMONISER_LEASE": "3", "GENOMHUB_HARMONISER_HEARTBEAT_INTERVAL": "0.5"}
"""A lease a test can wait out: a killed harmoniser's job is taken over within seconds."""


def start_harmoniser(log: Path, **env: str) -> tuple[Process, int]:
    port = free_port()
    settings = {
        "GENOMHUB_HARMONISER_PORT": str(port),
        "GENOMHUB_HARMONISER_RETRIES": "1",
        "GENOMHUB_HARMONISER_RETRY_DELAY": "0.5",
        "GENOMHUB_HARMONISER_CONCURRENCY": "2",
        **env,
    }
    proc = Process(genomhub("run", "harmoniser"), log, settings).start()
    proc.wait_http(port)
    return proc, port


@pytest.fixture
def harmoniser(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Process]:
    proc, _ = start_harmoniser(tmp_path / "harmoniser.log")
    try:
        yield proc
    finally:
        proc.stop()


def send(events: list[tuple[Validated, str]]) -> str:
    """Publish validated events under one upstream span; returns its trace id."""
    telemetry.setup("test-upstream")
    with telemetry.tracer("test").start_as_current_span("validator emit"):
        trace_id = telemetry.current_trace_id()
        asyncio.run(publish(events, "/genomhub/validator", principal="validator"))
    assert trace_id is not None
    return trace_id


def harmonised(bootstrap: str, submission_id: str) -> list[tuple[Any, Harmonised, str]]:
    """(record, event, event id) of every harmonised record of a submission."""
    out = []
    for record in records(bootstrap, topic_name(Harmonised)):
        headers = normalise_headers(record.headers)
        # Other suites share the broker and put malformed records on this topic on purpose.
        if dict(headers).get("ce_subject", b"").decode(errors="replace") != submission_id:
            continue
        envelope = decode(headers, record.value, Harmonised)
        out.append((record, envelope.data, envelope.id))
    return out


def traceparent(record: Any) -> str:
    return dict(normalise_headers(record.headers)).get("traceparent", b"").decode()
