"""Jobs without a broker: retries then a failed report, take-over of a dead owner's job, replays,
passthrough."""

from __future__ import annotations

import asyncio
import gzip
import socket
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from services.harmoniser.harmonise import Harmoniser
from services.harmoniser.jobs import Job, JobStore, Rerun, job_key
from services.harmoniser.local import LocalBackend
from services.harmoniser.runner import JobRunner
from shared.events import FileRole, HarmonisationPolicy, Harmonised, Validated
from shared.storage import ArchiveWriter
from shared.synthetic import simulate_paired_reads
from tests.ids import issued_id
from tests.unit.harmoniser.factory import archive_at, checked, validated


class Collected:
    def __init__(self) -> None:
        self.events: list[tuple[Job, Harmonised]] = []

    async def __call__(self, job: Job, event: Harmonised) -> None:
        self.events.append((job, event))


def queue(tmp_path: Path) -> JobStore:
    return JobStore(f"sqlite:///{tmp_path / 'state' / 'jobs.sqlite'}")


def local_harmoniser(
    tmp_path: Path, reference: Path, cache: Path, writer: ArchiveWriter, rerun_release: str | None = None
) -> Harmoniser:
    """The local backend's harmoniser over the archive of ``tmp_path`` (of a campaign's
    release, if ``rerun_release``)."""
    return Harmoniser(
        LocalBackend(reference, cache, threads=2, sarek_version=rerun_release or "3.5.1"),
        store_url=(tmp_path / "store").as_uri(),
        writer=writer,
        pipeline="genomhub-local-germline",
        pipeline_version="0.1.0",
        reference="synthetic-v1",
        guideline_version="ngc-clinical-output-2026.1",
        archive=archive_at(tmp_path),
        rerun_release=rerun_release,
    )


def make_runner(
    tmp_path: Path, reference: Path, cache: Path, writer: ArchiveWriter, emit: Collected, retries: int = 1
) -> JobRunner:
    return JobRunner(
        queue(tmp_path),
        local_harmoniser(tmp_path, reference, cache, writer),
        emit,
        rerun_harmoniser=lambda release: local_harmoniser(tmp_path, reference, cache, writer, release),
        runs_dir=tmp_path / "runs",
        concurrency=1,
        retries=retries,
        retry_delay=0.0,
        heartbeat_interval=0.2,
        lease=2.0,
        poll_interval=0.1,
    )


async def run_until(runner: JobRunner, emit: Collected, count: int, timeout: float = 120) -> None:
    task = asyncio.create_task(runner.run())
    deadline = time.monotonic() + timeout
    try:
        while len(emit.events) < count:
            assert time.monotonic() < deadline, "no harmonised event in time"
            await asyncio.sleep(0.1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def enqueue(runner: JobRunner, event: Validated) -> Job:
    job, created = runner.store.enqueue(
        event.submission.submission_id,
        f"cause-{event.submission.submission_id}",
        "event-1",
        event.model_dump_json(),
        [],
    )
    assert created
    return job


def broken_pair(folder: Path, reference: Path) -> list[Path]:
    """A pair whose read 2 file lost its first record, so mates no longer match: bwa stops."""
    sim = simulate_paired_reads(reference, folder, prefix="B1", coverage=0.3, snps=5, seed=3)
    lines = gzip.decompress(sim.fastq_2.read_bytes()).splitlines(keepends=True)
    sim.fastq_2.write_bytes(gzip.compress(b"".join(lines[4:])))
    return [sim.fastq_1, sim.fastq_2]


async def test_a_failing_run_is_retried_then_reported_failed_with_its_log(
    tmp_path: Path, reference: Path, harmoniser_cache: Path, archive_writer: ArchiveWriter
) -> None:
    emit = Collected()
    runner = make_runner(tmp_path, reference, harmoniser_cache, archive_writer, emit, retries=1)
    files = [
        checked(p, FileRole.RAW_READS, "fastq", archive=archive_at(tmp_path))
        for p in broken_pair(tmp_path / "in", reference)
    ]
    enqueue(
        runner,
        validated(
            issued_id("sub-fail"), "B1", files, HarmonisationPolicy.INTERNATIONAL, needs_harmonisation=True
        ),
    )
    await run_until(runner, emit, 1)
    [(_job, event)] = emit.events
    assert event.status == "failed" and event.attempts == 2 and event.outputs == []
    assert "MAPPING_MARKDUPLICATES (B1) exited with status" in event.log_tail
    assert "paired reads have different names" in event.log_tail  # bwa's own words
    stored = runner.store.get(issued_id("sub-fail"))
    assert stored is not None and stored.state == "failed" and stored.emitted and stored.attempts == 2


class SlowBroker(Collected):
    """A broker that takes a while to acknowledge: the job is finished in the store and not
    yet marked as sent for several of the runner's polls."""

    async def __call__(self, job: Job, event: Harmonised) -> None:
        await asyncio.sleep(0.5)
        await super().__call__(job, event)


async def test_a_finished_job_is_sent_once_while_its_own_report_waits_for_the_broker(
    tmp_path: Path, reference: Path, harmoniser_cache: Path, archive_writer: ArchiveWriter
) -> None:
    emit = SlowBroker()
    runner = make_runner(tmp_path, reference, harmoniser_cache, archive_writer, emit, retries=0)
    files = [
        checked(p, FileRole.RAW_READS, "fastq", archive=archive_at(tmp_path))
        for p in broken_pair(tmp_path / "in", reference)
    ]
    enqueue(
        runner,
        validated(
            issued_id("sub-slow"), "B2", files, HarmonisationPolicy.INTERNATIONAL, needs_harmonisation=True
        ),
    )
    task = asyncio.create_task(runner.run())
    try:
        while not emit.events:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # ten more polls: none may send the job again
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert len(emit.events) == 1


async def test_passthrough_only_registers_clinical_output_in_place(
    tmp_path: Path, reference: Path, harmoniser_cache: Path, archive_writer: ArchiveWriter
) -> None:
    emit = Collected()
    runner = make_runner(tmp_path, reference, harmoniser_cache, archive_writer, emit)
    vcf = tmp_path / "clinical.vcf.gz"
    vcf.write_bytes(gzip.compress(b"##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"))
    files = [checked(vcf, FileRole.CLINICAL_OUTPUT, "vcf", conforms=True, archive=archive_at(tmp_path))]
    event = validated(
        issued_id("sub-national"),
        "N1",
        files,
        HarmonisationPolicy.NATIONAL,
        needs_harmonisation=False,
        passthrough=[vcf.name],
    )
    enqueue(runner, event)
    await run_until(runner, emit, 1)
    [(_, out)] = emit.events
    assert out.status == "succeeded" and out.provenance.pipeline == "clinical-output-passthrough"
    [kept] = out.outputs
    assert (kept.url, kept.sha256, kept.kind) == (files[0].url, files[0].sha256, "vcf")
    assert kept.provenance == "clinical output, conforms to guideline set ngc-clinical-output-2026.1"
    assert out.files == event.files and out.genome_equivalents == event.genome_equivalents


async def test_a_dead_owners_job_is_taken_over_once_its_orphan_stopped_and_run_again(
    tmp_path: Path, reference: Path, harmoniser_cache: Path, archive_writer: ArchiveWriter
) -> None:
    emit = Collected()
    runner = make_runner(tmp_path, reference, harmoniser_cache, archive_writer, emit)
    vcf = tmp_path / "c.vcf.gz"
    vcf.write_bytes(gzip.compress(b"##fileformat=VCFv4.2\n"))
    files = [checked(vcf, FileRole.CLINICAL_OUTPUT, "vcf", conforms=True, archive=archive_at(tmp_path))]
    enqueue(
        runner,
        validated(
            issued_id("sub-r"),
            "R1",
            files,
            HarmonisationPolicy.NATIONAL,
            needs_harmonisation=False,
            passthrough=[vcf.name],
        ),
    )
    dead = f"{socket.gethostname()}:1:dead"  # an owner on this host that will never heartbeat
    claimed = runner.store.claim(dead, lease=0.3)
    assert claimed is not None and claimed.state == "running" and claimed.owner == dead
    rundir = runner.rundir(issued_id("sub-r"))
    rundir.mkdir(parents=True)
    orphan = subprocess.Popen(["sleep", "120"], cwd=rundir, start_new_session=True)
    assert runner.store.set_pgid(issued_id("sub-r"), dead, orphan.pid)

    other = make_runner(
        tmp_path, reference, harmoniser_cache, archive_writer, emit
    )  # another replica's runner
    assert await other.take_over_expired() == []  # the lease has not ended yet
    time.sleep(0.4)
    assert await other.take_over_expired() == [issued_id("sub-r")]
    assert orphan.wait(10) != 0
    assert not psutil.pid_exists(orphan.pid) or psutil.Process(orphan.pid).status() == psutil.STATUS_ZOMBIE
    await run_until(other, emit, 1)
    [(_, event)] = emit.events
    assert event.status == "succeeded" and event.attempts == 2
    assert await other.take_over_expired() == []
    done = other.store.get(issued_id("sub-r"))
    assert done is not None and done.emitted and done.owner is None
    assert not runner.store.heartbeat(issued_id("sub-r"), dead, 60.0)  # the dead owner holds nothing


async def test_a_campaigns_rerun_is_a_job_of_its_own_whose_outputs_sit_beside_the_intakes(
    tmp_path: Path, reference: Path, harmoniser_cache: Path, archive_writer: ArchiveWriter
) -> None:
    emit = Collected()
    runner = make_runner(tmp_path, reference, harmoniser_cache, archive_writer, emit)
    sim = simulate_paired_reads(reference, tmp_path / "in", prefix="C1", coverage=0.3, snps=5, seed=7)
    files = [
        checked(p, FileRole.RAW_READS, "fastq", archive=archive_at(tmp_path)) for p in (sim.fastq_1, sim.fastq_2)
    ]
    sid = issued_id("sub-campaign")
    event = validated(sid, "C1", files, HarmonisationPolicy.INTERNATIONAL, needs_harmonisation=True)
    enqueue(runner, event)
    await run_until(runner, emit, 1)
    rerun = Rerun("c" * 32, "3.6.0")
    job, created = runner.store.enqueue(sid, "cause-rerun", "event-rerun", event.model_dump_json(), [], rerun)
    assert created and job.key == job_key(sid, "3.6.0") != sid and job.rerun == rerun
    assert not runner.store.enqueue(sid, "cause-rerun", "event-rerun", event.model_dump_json(), [], rerun)[1]
    await run_until(runner, emit, 2)

    [(intake_job, intake), (rerun_job, rerun_event)] = emit.events
    assert intake_job.key == sid and intake.campaign_id is None
    assert rerun_job.key == job.key and rerun_event.campaign_id == rerun.campaign_id
    assert rerun_event.status == "succeeded" and rerun_event.submission == intake.submission
    assert rerun_event.provenance.parameters["mirrors"] == "nf-core/sarek 3.6.0"
    assert intake.provenance.parameters["mirrors"] == "nf-core/sarek 3.5.1"
    made = [o for o in rerun_event.outputs if o.kind in ("cram", "vcf")]
    assert made and all(f"/harmonised/{sid}/sarek-3.6.0/" in o.url for o in made)
    kept = {o.url: o.sha256 for o in intake.outputs}
    assert not set(kept) & {o.url for o in made}, "the rerun wrote nothing over the intake's outputs"
    for url, sha256 in kept.items():
        assert url.startswith("file://") and Path(url.removeprefix("file://")).exists(), url
        assert sha256 == next(o.sha256 for o in intake.outputs if o.url == url)
    assert {j.key for j in runner.store.all()} == {sid, job.key}


def test_enqueue_is_idempotent_by_submission(tmp_path: Path) -> None:
    store = queue(tmp_path)
    _first, created = store.enqueue("s1", "c1", "e1", "{}", [("traceparent", b"00-abc-def-01")])
    again, created_again = store.enqueue("s1", "c2", "e2", "{}", [])
    assert created and not created_again
    assert again.event_id == "e1" and again.trace_headers == [("traceparent", b"00-abc-def-01")]
    assert store.counts() == {"queued": 1, "running": 0, "succeeded": 0, "failed": 0}


@pytest.mark.parametrize("retries", [0])
def test_claim_takes_each_job_once(tmp_path: Path, retries: int) -> None:
    store = queue(tmp_path)
    store.enqueue("s1", "c1", "e1", "{}", [])
    job = store.claim("replica-a", 60.0)
    assert job is not None and job.attempts == 1 + retries
    assert store.claim("replica-b", 60.0) is None


async def test_a_job_whose_owner_died_on_this_host_is_taken_over_without_waiting_out_its_lease(
    tmp_path: Path, reference: Path, harmoniser_cache: Path, archive_writer: ArchiveWriter
) -> None:
    runner = make_runner(tmp_path, reference, harmoniser_cache, archive_writer, Collected())
    ended = subprocess.Popen(["true"])
    ended.wait()  # its pid now names no process
    for sid, owner in (
        ("s-here", f"{socket.gethostname()}:{ended.pid}:gone"),
        ("s-elsewhere", f"another-host:{ended.pid}:alive-there"),
        ("s-alive", f"{socket.gethostname()}:1:reused"),  # pid 1 exists: the lease decides
    ):
        runner.store.enqueue(sid, f"c-{sid}", f"e-{sid}", "{}", [])
        claimed = runner.store.claim(owner, lease=60.0)
        assert claimed is not None and claimed.submission_id == sid
    assert await runner.take_over_expired() == ["s-here"]
    assert await runner.take_over_expired() == []
    assert {j.submission_id: j.state for j in runner.store.all()} == {
        "s-here": "queued",
        "s-elsewhere": "running",
        "s-alive": "running",
    }
