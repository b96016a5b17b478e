"""Two harmoniser replicas on one PostgreSQL queue and one broker: the replica running a job
is SIGKILLed mid-run, its pipeline dies with it, the other takes the job over and finishes
it, and one harmonised event is emitted. Both run on this host, so the survivor sees the
owner's process gone and takes over at its next look; a replica on another host waits out
the lease (tests/unit/harmoniser/test_leases.py)."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import psutil

from services.harmoniser.jobs import Job, JobStore, pid_of
from shared.bus import new_event_id
from shared.events import FileRole, HarmonisationPolicy
from shared.storage import ArchiveReader
from tests.integration.harmoniser.conftest import SHORT_LEASE, Inputs, harmonised, send, start_harmoniser
from tests.postgres import PostgresServer
from tests.support import wait_for
from tests.unit.harmoniser.factory import checked, validated


def gone(pid: int) -> bool:
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_replica_killed_mid_job_has_its_job_finished_once_by_the_other(
    archive: ArchiveReader,
    kafka_bootstrap: str,
    harmoniser_inputs: Inputs,
    postgres_server: PostgresServer,
    tmp_path: Path,
) -> None:
    url = postgres_server.new_database("harmoniser")
    env = {"GENOMHUB_HARMONISER_DATABASE_URL": url, "GENOMHUB_HARMONISER_CONCURRENCY": "1", **SHORT_LEASE}
    run = uuid.uuid4().hex[:8]
    fastq = [checked(p, FileRole.RAW_READS, "fastq", archive=archive) for p in harmoniser_inputs.big_fastq]
    event = validated(
        f"{run}-x", f"S{run}X", fastq, HarmonisationPolicy.INTERNATIONAL, needs_harmonisation=True
    )
    sid = event.submission.submission_id
    logs = {"a": tmp_path / "replica-a.log", "b": tmp_path / "replica-b.log"}
    replicas = {"a": start_harmoniser(logs["a"], **env)[0]}  # the first migrates the shared queue
    replicas["b"] = start_harmoniser(logs["b"], **env)[0]
    store = JobStore(url)
    try:
        send([(event, new_event_id())])

        def running() -> Job | None:
            job = store.get(sid)
            return job if job is not None and job.state == "running" and job.pgid and job.owner else None

        job = wait_for(running, timeout=120, what="a replica to run the job's pipeline")
        assert job.owner is not None and job.pgid is not None
        owner_pid = pid_of(job.owner)
        assert owner_pid is not None, job.owner
        [killed] = [
            name for name, proc in replicas.items() if proc.proc is not None and proc.proc.pid == owner_pid
        ]
        survivor = "b" if killed == "a" else "a"
        replicas[killed].stop(signal.SIGKILL)  # mid-job, no goodbye
        wait_for(lambda: gone(job.pgid or 0), timeout=15, what="the killed replica's pipeline to die with it")

        emitted = wait_for(
            lambda: harmonised(kafka_bootstrap, sid), timeout=150, what="harmonised by the survivor"
        )
        finished = wait_for(
            lambda: (lambda j: j if j is not None and j.emitted else None)(store.get(sid)),
            timeout=30,
            what="the job marked as sent",
        )
    finally:
        for proc in replicas.values():
            proc.stop()
        store.dispose()
    assert len({(i, e.model_dump_json()) for _, e, i in emitted}) == 1  # one event, however often delivered
    out = emitted[0][1]
    assert out.status == "succeeded" and out.attempts == 2
    assert finished.state == "succeeded" and finished.attempts == 2 and finished.owner is None
    killed_log, survivor_log = logs[killed].read_text(), logs[survivor].read_text()
    assert killed_log.count('"job started"') == 1 and '"job succeeded"' not in killed_log
    assert survivor_log.count("took over a job whose lease ended") == 1
    assert survivor_log.count('"job started"') == 1 and survivor_log.count('"job succeeded"') == 1
