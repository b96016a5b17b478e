"""Running queued jobs outside the consumer loop, with a concurrency limit and retries.

The consumer only queues (a database row); this runner claims due jobs, runs each as an
asyncio task whose pipeline steps are subprocesses (so the event loop, and with it the
consumer's polling, never waits on a pipeline), relaunches failed runs after a delay up to
the configured number of retries, and reports every finished job as a harmonised event,
succeeded or failed with the tail of its log: a job is never dropped silently.

After a restart, jobs the previous process left running are relaunched once: their orphaned
processes (if the process died without stopping them) are killed first, so that two runs of
one job never write the same folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import psutil
from opentelemetry.trace import SpanKind, Status, StatusCode

from services.harmoniser.harmonise import Harmoniser, harmonised_event
from services.harmoniser.jobs import Job, JobStore
from services.harmoniser.steps import PipelineFailed, kill_group
from shared import telemetry
from shared.events import Harmonised, Validated
from shared.paths import beneath

log = telemetry.get_logger(__name__)
Emit = Callable[[Job, Harmonised], Awaitable[None]]
"""Sends a job's harmonised event (under the job's trace context) and waits for the ack."""


class JobRunner:
    def __init__(
        self,
        store: JobStore,
        harmoniser: Harmoniser,
        emit: Emit,
        *,
        runs_dir: Path,
        concurrency: int,
        retries: int,
        retry_delay: float,
        poll_interval: float = 1.0,
    ) -> None:
        self.store = store
        self.harmoniser = harmoniser
        self.emit = emit
        self.runs_dir = runs_dir
        self.concurrency = concurrency
        self.retries = retries
        self.retry_delay = retry_delay
        self.poll_interval = poll_interval
        self.tracer = telemetry.tracer("genomhub.harmoniser.jobs")
        self._wake = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._relaunched: set[str] = set()

    def wake(self) -> None:
        """A job was queued: look now rather than at the next poll."""
        self._wake.set()

    def rundir(self, submission_id: str) -> Path:
        """The job's run folder, which the runner creates and removes: only ever below ``runs_dir``."""
        return beneath(self.runs_dir, submission_id)

    async def recover(self) -> list[str]:
        """Requeue the jobs a previous process left running; returns their submission ids."""
        interrupted = await asyncio.to_thread(self.store.interrupted)
        for job in interrupted:
            if job.pgid is not None:
                await asyncio.to_thread(self._kill_orphan, job)
            await asyncio.to_thread(self.store.requeue, job.submission_id)
            self._relaunched.add(job.submission_id)
            log.warning("relaunching interrupted job", submission_id=job.submission_id, attempts=job.attempts)
        return [j.submission_id for j in interrupted]

    def _kill_orphan(self, job: Job) -> None:
        assert job.pgid is not None
        rundir = str(self.rundir(job.submission_id).resolve())
        try:
            cwd = psutil.Process(job.pgid).cwd()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return
        if cwd == rundir or cwd.startswith(rundir + "/"):  # the pid is still ours, not a reused one
            log.warning("killing orphaned pipeline", submission_id=job.submission_id, pgid=job.pgid)
            kill_group(job.pgid)

    async def run(self) -> None:
        """Claim and run jobs until cancelled; cancelling stops the running pipelines too."""
        try:
            while True:
                try:
                    await self.emit_pending()
                    while len(self._running) < self.concurrency:
                        job = await asyncio.to_thread(self.store.claim)
                        if job is None:
                            break
                        task = asyncio.create_task(self._execute(job), name=f"harmonise {job.submission_id}")
                        self._running[job.submission_id] = task
                        task.add_done_callback(self._done_callback(job.submission_id))
                except Exception:  # a passing store or broker failure must not stop the runner
                    log.exception("job runner pass failed; trying again at the next poll")
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)
        finally:
            tasks = list(self._running.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _done_callback(self, submission_id: str) -> Callable[[asyncio.Task[None]], None]:
        def done(_task: asyncio.Task[None]) -> None:
            self._running.pop(submission_id, None)
            self._wake.set()

        return done

    async def emit_pending(self) -> None:
        """Send the events of finished jobs that were not acknowledged yet (e.g. broker down).

        A job still running here has finished in the store but is reporting itself: sending
        it from here too would emit its event twice."""
        for job in await asyncio.to_thread(self.store.unemitted):
            if job.submission_id in self._running:
                continue
            try:
                await self.report(job)
            except Exception:
                log.exception("cannot send harmonised yet; will retry", submission_id=job.submission_id)
                return

    async def report(self, job: Job) -> None:
        assert job.result is not None
        await self.emit(job, Harmonised.model_validate_json(job.result))
        await asyncio.to_thread(self.store.mark_emitted, job.submission_id)

    async def _execute(self, job: Job) -> None:
        validated = Validated.model_validate_json(job.request)
        sid = job.submission_id
        rundir = self.rundir(sid)
        resume = sid in self._relaunched or job.attempts > 1
        bound = telemetry.bind(submission_id=sid)
        started = time.monotonic()
        with self.tracer.start_as_current_span(
            "harmoniser run",
            context=telemetry.extract(job.trace_headers),
            kind=SpanKind.INTERNAL,
            attributes={"genomhub.submission_id": sid, "genomhub.attempt": job.attempts},
        ) as span:
            try:
                log.info("job started", attempt=job.attempts, backend=self.harmoniser.backend.name)

                def on_process(pgid: int | None) -> None:
                    self.store.set_pgid(sid, pgid)

                outputs, provenance = await self.harmoniser.execute(validated, rundir, resume, on_process)
                event = harmonised_event(validated, "succeeded", outputs, provenance, job.attempts)
                await asyncio.to_thread(self.store.finish, sid, "succeeded", event.model_dump_json())
                log.info(
                    "job succeeded",
                    attempt=job.attempts,
                    outputs=len(outputs),
                    duration_s=provenance.duration_s,
                )
                await asyncio.to_thread(shutil.rmtree, rundir, ignore_errors=True)
            except asyncio.CancelledError:
                log.warning("job interrupted; it is relaunched when the harmoniser starts again")
                raise
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                log_tail = exc.log_tail if isinstance(exc, PipelineFailed) else ""
                message = f"{type(exc).__name__}: {exc}" if not isinstance(exc, PipelineFailed) else str(exc)
                log_tail = f"{message}\n{log_tail}".strip()
                if job.attempts <= self.retries:
                    log.warning("job failed; relaunching later", attempt=job.attempts, error=message)
                    await asyncio.to_thread(self.store.retry_later, sid, self.retry_delay, log_tail)
                    return
                log.error("job failed for good", attempts=job.attempts, error=message)
                event = harmonised_event(
                    validated,
                    "failed",
                    [],
                    self.harmoniser.failed_provenance(validated, time.monotonic() - started),
                    job.attempts,
                    log_tail[-8000:],
                )
                await asyncio.to_thread(self.store.finish, sid, "failed", event.model_dump_json(), log_tail)
            finally:
                telemetry.unbind(bound)
            finished = await asyncio.to_thread(self.store.get, sid)
            assert finished is not None
            try:
                await self.report(finished)
            except Exception:
                log.exception("cannot send harmonised yet; will retry", submission_id=sid)
