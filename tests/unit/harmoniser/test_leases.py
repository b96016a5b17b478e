"""The job queue shared by replicas, on SQLite and on a real PostgreSQL: a job is claimed by
one replica however many claim at once, a job whose lease ended is taken over exactly once,
and its old owner, should it come back, can neither renew nor finish it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import psutil
import pytest
from sqlalchemy import update

from services.harmoniser.harmonise import INPUTS
from services.harmoniser.jobs import JobStore, jobs
from shared.events import FileRole, HarmonisationPolicy
from shared.storage import ArchiveWriter
from shared.synthetic import simulate_paired_reads
from tests.ids import issued_id
from tests.postgres import engine_urls
from tests.unit.harmoniser.factory import archive_at, checked, validated
from tests.unit.harmoniser.test_jobs import Collected, enqueue, make_runner

database_url = engine_urls("harmoniser")
T = TypeVar("T")


@pytest.fixture
def replicas(database_url: str) -> Iterator[tuple[JobStore, JobStore]]:
    """Two replicas' stores on one database: two engines, two pools, as two processes have."""
    first, second = JobStore(database_url), JobStore(database_url)
    try:
        yield first, second
    finally:
        first.dispose()
        second.dispose()


def at_once(count: int, work: Callable[[int], T]) -> list[T]:
    """``work(i)`` in ``count`` threads released together; their results."""
    start = threading.Barrier(count)
    results: list[T] = []
    lock = threading.Lock()
    failures: list[BaseException] = []

    def run(i: int) -> None:
        start.wait()
        try:
            result = work(i)
        except BaseException as exc:  # reported below, with the thread's own traceback
            failures.append(exc)
            return
        with lock:
            results.append(result)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return results


def expire(store: JobStore, submission_id: str) -> None:
    """Move the job's lease into the past, as if its owner had not been heard of for a lease."""
    with store.writing() as conn:
        conn.execute(
            update(jobs)
            .where(jobs.c.submission_id == submission_id)
            .values(lease_expires_at=jobs.c.updated_at)  # the last write, before now
        )


def test_many_claimers_on_two_engines_take_each_job_exactly_once(replicas: tuple[JobStore, JobStore]) -> None:
    submissions = [f"s{i:03d}" for i in range(60)]
    for sid in submissions:
        replicas[0].enqueue(sid, f"c-{sid}", f"e-{sid}", "{}", [])

    first_claims_made = threading.Barrier(8)

    def claim_until_empty(i: int) -> list[tuple[str, str]]:
        # Each claimer holds its first job until all eight hold one, so the claims really
        # interleave across engines however the threads happen to be scheduled.
        store, owner = replicas[i % 2], f"replica-{i}"
        taken: list[tuple[str, str]] = []
        while (job := store.claim(owner, 60.0)) is not None:
            if not taken:
                first_claims_made.wait()
            assert job.owner == owner and job.state == "running" and job.attempts == 1
            taken.append((job.submission_id, owner))
        return taken

    claims = [c for taken in at_once(8, claim_until_empty) for c in taken]
    assert Counter(sid for sid, _ in claims) == Counter(submissions)  # every job once, none twice
    assert len({owner for _, owner in claims}) == 8  # the claimers really ran side by side
    for sid, owner in claims:
        job = replicas[1].get(sid)
        assert job is not None and job.owner == owner and job.lease_expires_at is not None
    assert replicas[0].counts() == {"queued": 0, "running": 60, "succeeded": 0, "failed": 0}


def test_a_job_whose_lease_ended_is_taken_over_exactly_once(replicas: tuple[JobStore, JobStore]) -> None:
    first, second = replicas
    first.enqueue("s1", "c1", "e1", "{}", [])
    claimed = first.claim("replica-dead", 0.3)
    assert claimed is not None
    assert first.expired() == []  # the lease holds for now
    time.sleep(0.4)
    [stale] = second.expired()
    assert stale.submission_id == "s1" and stale.owner == "replica-dead"

    taken = at_once(8, lambda i: replicas[i % 2].take_over(stale, f"replica-{i}", 60.0))
    assert taken.count(True) == 1
    job = second.get("s1")
    assert job is not None and (job.state, job.owner, job.lease_expires_at, job.pgid) == (
        "queued",
        None,
        None,
        None,
    )
    assert second.expired() == []

    again = second.claim("replica-b", 60.0)
    assert (
        again is not None and again.attempts == 2 and again.owner == "replica-b"
    )  # the take-over is counted


def test_an_owner_that_lost_its_lease_can_neither_renew_nor_finish_it(
    replicas: tuple[JobStore, JobStore],
) -> None:
    paused, other = replicas
    paused.enqueue("s1", "c1", "e1", "{}", [])
    assert paused.claim("replica-paused", 60.0) is not None
    assert paused.heartbeat("s1", "replica-paused", 60.0)
    assert paused.set_pgid("s1", "replica-paused", 4242)

    expire(other, "s1")  # the owner paused for longer than its lease
    [stale] = other.expired()
    assert other.take_over(stale, "replica-other", 60.0)
    taken = other.claim("replica-other", 60.0)
    assert taken is not None and taken.owner == "replica-other"

    assert not paused.heartbeat("s1", "replica-paused", 60.0)
    assert not paused.set_pgid("s1", "replica-paused", 4343)
    assert not paused.finish("s1", "replica-paused", "succeeded", '{"stale": true}')
    assert not paused.retry_later("s1", "replica-paused", 0.0, "stale")
    assert not paused.release("s1", "replica-paused")
    job = other.get("s1")
    assert job is not None and job.state == "running" and job.owner == "replica-other"
    assert job.result is None and job.pgid is None and job.attempts == 2
    assert other.heartbeat("s1", "replica-other", 60.0)


def test_a_finished_job_its_owner_never_reported_is_reported_by_one_taker(
    replicas: tuple[JobStore, JobStore],
) -> None:
    first, second = replicas
    first.enqueue("s1", "c1", "e1", "{}", [])
    assert first.claim("replica-dead", 60.0) is not None
    assert first.finish("s1", "replica-dead", "succeeded", "{}")
    assert second.expired() == []  # the owner is still sending it
    expire(second, "s1")
    [stale] = second.expired()
    assert stale.state == "succeeded" and not stale.emitted

    taken = at_once(6, lambda i: replicas[i % 2].take_over(stale, f"replica-{i}", 60.0))
    assert taken.count(True) == 1
    job = second.get("s1")
    assert (
        job is not None and job.state == "succeeded" and job.owner is not None and job.owner != "replica-dead"
    )
    second.mark_emitted("s1")
    done = first.get("s1")
    assert done is not None and done.emitted and done.owner is None and first.expired() == []


def test_a_running_job_is_kept_by_its_heartbeats(replicas: tuple[JobStore, JobStore]) -> None:
    first, second = replicas
    first.enqueue("s1", "c1", "e1", "{}", [])
    assert first.claim("replica-a", 0.4) is not None
    for _ in range(5):
        time.sleep(0.2)
        assert first.heartbeat("s1", "replica-a", 0.4)
        assert second.expired() == []
    time.sleep(0.5)
    assert [j.submission_id for j in second.expired()] == ["s1"]


async def test_an_owner_that_lost_its_lease_stops_its_pipeline_and_emits_nothing(
    tmp_path: Path, reference: Path, harmoniser_cache: Path, archive_writer: ArchiveWriter
) -> None:
    emit = Collected()
    paused = make_runner(tmp_path, reference, harmoniser_cache, archive_writer, emit)
    reads = simulate_paired_reads(reference, tmp_path / "in", prefix="L1", coverage=20, snps=10, seed=11)
    files = [
        checked(p, FileRole.RAW_READS, "fastq", archive=archive_at(tmp_path))
        for p in (reads.fastq_1, reads.fastq_2)
    ]
    sid = issued_id("sub-lost")
    enqueue(paused, validated(sid, "L1", files, HarmonisationPolicy.INTERNATIONAL, needs_harmonisation=True))
    other = JobStore(paused.store.url)
    task = asyncio.create_task(paused.run())
    try:
        deadline = time.monotonic() + 60
        while (job := other.get(sid)) is None or job.pgid is None:
            assert time.monotonic() < deadline, "the pipeline did not start"
            await asyncio.sleep(0.05)
        pgid = job.pgid
        staged = paused.rundir(sid) / INPUTS
        assert (staged / reads.fastq_1.name).read_bytes() == reads.fastq_1.read_bytes()  # decrypted
        # Without yielding to the event loop, as a paused process sees it: its lease ends,
        # another replica takes the job over and claims it.
        expire(other, sid)
        [stale] = other.expired()
        assert other.take_over(stale, "replica-other", 60.0)
        assert other.claim("replica-other", 60.0) is not None
        deadline = time.monotonic() + 15
        while psutil.pid_exists(pgid) and psutil.Process(pgid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the pipeline of the lost job still runs"
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # five heartbeats and ten polls more: nothing may be sent
        assert sid not in paused._running
        assert not staged.exists(), "the lost job's decrypted inputs outlived it"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        other.dispose()
    assert emit.events == []
    assert not list((paused.rundir(sid) / "results").rglob("*.vcf.gz")), "the run was not stopped, it ended"
    job = paused.store.get(sid)
    assert job is not None and job.state == "running" and job.owner == "replica-other" and job.result is None


def test_a_job_left_running_before_leases_is_taken_over(replicas: tuple[JobStore, JobStore]) -> None:
    """A queue migrated from 0001 may hold a job a harmoniser was running then: it has neither
    owner nor lease, so no one will ever renew it."""
    first, second = replicas
    first.enqueue("s-old", "c", "e", "{}", [])
    with first.writing() as conn:
        conn.execute(update(jobs).where(jobs.c.submission_id == "s-old").values(state="running", attempts=1))
    [stale] = second.expired()
    assert stale.owner is None and stale.lease_expires_at is None
    assert at_once(4, lambda i: replicas[i % 2].take_over(stale, f"replica-{i}", 60.0)).count(True) == 1
    again = first.claim("replica-a", 60.0)
    assert again is not None and again.submission_id == "s-old" and again.attempts == 2
