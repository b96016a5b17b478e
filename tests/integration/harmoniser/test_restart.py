"""A harmoniser killed mid-run: the harmoniser restarted on its host takes its job over (the
old owner's process is gone) and it finishes exactly once."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

from services.harmoniser.jobs import JobStore
from shared.bus import new_event_id
from shared.config import HarmoniserSettings
from shared.events import FileRole, HarmonisationPolicy
from shared.storage import ArchiveReader
from tests.integration.harmoniser.conftest import SHORT_LEASE, Inputs, harmonised, send, start_harmoniser
from tests.support import wait_for
from tests.unit.harmoniser.factory import checked, validated


def test_killed_mid_job_the_job_finishes_exactly_once_after_restart(
    archive: ArchiveReader, kafka_bootstrap: str, harmoniser_inputs: Inputs, tmp_path: Path
) -> None:
    store = JobStore(HarmoniserSettings().database_url)
    run = uuid.uuid4().hex[:8]
    fastq = [checked(p, FileRole.RAW_READS, "fastq", archive=archive) for p in harmoniser_inputs.big_fastq]
    event = validated(
        f"{run}-r", f"S{run}R", fastq, HarmonisationPolicy.INTERNATIONAL, needs_harmonisation=True
    )
    sid = event.submission.submission_id

    first, _ = start_harmoniser(tmp_path / "first.log", **SHORT_LEASE)
    try:
        send([(event, new_event_id())])
        running = wait_for(
            lambda: (lambda j: j if j is not None and j.state == "running" and j.pgid else None)(
                store.get(sid)
            ),
            timeout=120,
            what="the job's pipeline to run",
        )
    finally:
        first.stop(signal.SIGKILL)  # no goodbye: the job stays running, under a lease no one renews
    assert running.attempts == 1
    assert harmonised(kafka_bootstrap, sid) == []

    second, _ = start_harmoniser(tmp_path / "second.log", **SHORT_LEASE)
    try:
        emitted = wait_for(
            lambda: harmonised(kafka_bootstrap, sid), timeout=150, what="harmonised after restart"
        )
    finally:
        second.stop()
    assert len({(i, e.model_dump_json()) for _, e, i in emitted}) == 1  # one event, however often delivered
    event_out = emitted[0][1]
    assert event_out.status == "succeeded" and event_out.attempts == 2
    job = store.get(sid)
    assert job is not None and job.state == "succeeded" and job.attempts == 2 and job.emitted
    second_log = (tmp_path / "second.log").read_text()
    assert second_log.count("took over a job whose lease ended") == 1
    assert second_log.count('"job started"') == 1 and second_log.count('"job succeeded"') == 1
