"""Running queued jobs outside the consumer loop, with a concurrency limit and retries.

The consumer only queues (a database row); this runner claims due jobs, runs each as an
asyncio task whose pipeline steps are subprocesses (so the event loop, and with it the
consumer's polling, never waits on a pipeline), relaunches failed runs after a doubling delay
(``shared.retry``) up to the configured number of retries, and reports every finished job as a harmonised event,
succeeded or failed with the tail of its log: a job is never dropped silently.

Every replica runs one. A claimed job is held by a lease that the runner renews every
heartbeat while the job runs and reports itself; a heartbeat that finds the job gone (its
lease ended and another replica took it over, e.g. after a long pause of this process)
stops the pipeline, and the outcome of a run that lost its job is neither stored nor sent.
Any replica looks for jobs whose lease ended (:meth:`JobRunner.take_over_expired`): a
running one is stopped where this replica can see its processes (the same host) and goes
back to the queue, so two runs of one job never write the same folder; a finished one not
yet reported is reported by the taker. A runner that stops gives its running jobs back.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import psutil
from opentelemetry.trace import SpanKind, Status, StatusCode

from services.harmoniser.harmonise import Harmoniser, harmonised_event
from services.harmoniser.jobs import Job, JobStore, host_of, replica_id
from services.harmoniser.steps import PipelineFailed, kill_group
from shared import telemetry
from shared.database import holder_gone
from shared.events import Harmonised, Provenance, Validated
from shared.paths import beneath
from shared.retry import Backoff

log = telemetry.get_logger(__name__)
Emit = Callable[[Job, Harmonised], Awaitable[None]]
"""Sends a job's harmonised event (under the job's trace context) and waits for the ack."""


class JobRunner:
    def __init__(
        self,
        store: JobStore,
        harmoniser: Harmoniser,
        emit: Emit,
        rerun_harmoniser: Callable[[str], Harmoniser] | None = None,
        *,
        runs_dir: Path,
        concurrency: int,
        retries: int,
        retry_delay: float,
        heartbeat_interval: float,
        lease: float,
        poll_interval: float = 1.0,
        owner: str | None = None,
    ) -> None:
        """``owner`` is this replica's id in the queue (:func:`replica_id` unless a test names it);
        ``rerun_harmoniser`` gives the harmoniser of a campaign's Sarek release (without it, a
        campaign's job fails with the reason)."""
        if heartbeat_interval >= lease:
            raise ValueError(
                f"the heartbeat interval ({heartbeat_interval} s) must be shorter than the lease ({lease} s), "
                "or every running job would be taken over between two heartbeats"
            )
        self.store = store
        self.harmoniser = harmoniser
        self.rerun_harmoniser = rerun_harmoniser
        self._reruns: dict[str, Harmoniser] = {}
        self.emit = emit
        self.runs_dir = runs_dir
        self.concurrency = concurrency
        self.relaunches = Backoff(retry_delay, retries + 1)
        self.heartbeat_interval = heartbeat_interval
        self.lease = lease
        self.poll_interval = poll_interval
        self.owner = owner or replica_id()
        self.tracer = telemetry.tracer("genomhub.harmoniser.jobs")
        self._wake = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._lost: set[str] = set()

    def wake(self) -> None:
        """A job was queued: look now rather than at the next poll."""
        self._wake.set()

    def rundir(self, key: str) -> Path:
        """The job's run folder, which the runner creates and removes: only ever below ``runs_dir``."""
        return beneath(self.runs_dir, key)

    def harmoniser_of(self, job: Job) -> Harmoniser:
        """The intake's harmoniser, or the one of the campaign's release (made once per release)."""
        if job.rerun is None:
            return self.harmoniser
        release = job.rerun.sarek_version
        if release not in self._reruns:
            if self.rerun_harmoniser is None:
                raise PipelineFailed("this harmoniser was started without campaign releases")
            self._reruns[release] = self.rerun_harmoniser(release)
        return self._reruns[release]

    async def take_over_expired(self) -> list[str]:
        """Take over the jobs whose lease ended; returns the submission ids this replica took.

        Run at the start and then every heartbeat interval by every replica; of several
        replicas looking at once, one takes each job (:meth:`JobStore.take_over`). Never
        raises: a database that does not answer now is asked again at the next look.
        """
        taken: list[str] = []
        try:
            expired = await asyncio.to_thread(self.store.expired)
            gone = [j for j in await asyncio.to_thread(self.store.held) if self._owner_gone(j.owner)]
            candidates = {j.key: (j, False) for j in expired} | {j.key: (j, True) for j in gone}
            for job, owner_gone in candidates.values():
                if job.state == "running" and job.pgid is not None:
                    await asyncio.to_thread(self._stop_orphan, job)
                if not await asyncio.to_thread(
                    self.store.take_over, job, self.owner, self.lease, owner_gone=owner_gone
                ):
                    continue
                taken.append(job.key)
                log.warning(
                    "took over a job whose lease ended",
                    submission_id=job.submission_id,
                    state=job.state,
                    previous_owner=job.owner,
                    attempts=job.attempts,
                )
        except Exception:
            log.exception("cannot look for jobs whose lease ended; looking again later")
        if taken:
            self.wake()
        return taken

    def _owner_gone(self, owner: str | None) -> bool:
        """An owner on this host whose process no longer exists: it will never heartbeat
        again, so its jobs are taken over at once (a harmoniser restarted on its host does not
        wait out its predecessor's lease). A pid that exists may be a reused one: then the
        lease decides, as it does for every owner on another host."""
        return owner is not None and owner != self.owner and holder_gone(owner)

    def _stop_orphan(self, job: Job) -> None:
        """Stop the old run's process group, if it runs here: only its own host can see it."""
        assert job.pgid is not None
        if job.owner is not None and host_of(job.owner) != socket.gethostname():
            return
        rundir = str(self.rundir(job.key).resolve())
        try:
            cwd = psutil.Process(job.pgid).cwd()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return
        if cwd == rundir or cwd.startswith(rundir + "/"):  # the pid is still the run's, not a reused one
            log.warning(
                "stopping the pipeline of a job whose lease ended",
                submission_id=job.submission_id,
                pgid=job.pgid,
            )
            kill_group(job.pgid)

    async def run(self) -> None:
        """Claim and run jobs until cancelled; cancelling stops the running pipelines too."""
        try:
            while True:
                try:
                    await self.emit_pending()
                    while len(self._running) < self.concurrency:
                        job = await asyncio.to_thread(self.store.claim, self.owner, self.lease)
                        if job is None:
                            break
                        task = asyncio.create_task(self._execute(job), name=f"harmonise {job.key}")
                        self._running[job.key] = task
                        task.add_done_callback(self._done_callback(job.key))
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

    def _done_callback(self, key: str) -> Callable[[asyncio.Task[None]], None]:
        def done(_task: asyncio.Task[None]) -> None:
            self._running.pop(key, None)
            self._wake.set()

        return done

    async def emit_pending(self) -> None:
        """Send the events of this replica's finished jobs that were not acknowledged yet
        (e.g. broker down), holding their lease meanwhile; another replica's are its own
        to send, or the taker's once their lease ended.

        A job still running here has finished in the store but is reporting itself: sending
        it from here too would emit its event twice."""
        for job in await asyncio.to_thread(self.store.unemitted):
            if job.owner != self.owner or job.key in self._running:
                continue
            if not await asyncio.to_thread(self.store.heartbeat, job.key, self.owner, self.lease):
                continue
            try:
                await self.report(job)
            except Exception:
                log.exception("cannot send harmonised yet; will retry", submission_id=job.submission_id)
                return

    async def report(self, job: Job) -> None:
        assert job.result is not None
        await self.emit(job, Harmonised.model_validate_json(job.result))
        await asyncio.to_thread(self.store.mark_emitted, job.key)

    async def _keep_lease(self, key: str, run: asyncio.Task[None]) -> None:
        """Heartbeat the job's lease while ``run`` lasts; stop ``run`` once the job is lost.

        Lost: the heartbeat finds another owner, or no heartbeat got through for a whole
        lease (the database was unreachable), after which another replica may have taken it.
        """
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            try:
                held = await asyncio.to_thread(self.store.heartbeat, key, self.owner, self.lease)
                if held:
                    last = time.monotonic()
            except Exception:
                log.exception("heartbeat failed", job=key)
                held = time.monotonic() - last < self.lease
            if not held:
                log.error(
                    "lease lost: stopping the run, the job is another replica's", job=key
                )
                self._lost.add(key)
                run.cancel()
                return

    async def _execute(self, job: Job) -> None:
        """Run a claimed job under its lease; a job whose lease was lost ends here quietly."""
        run = asyncio.current_task()
        assert run is not None
        keeper = asyncio.create_task(self._keep_lease(job.key, run))
        try:
            await self._run_job(job)
        except asyncio.CancelledError:
            if job.key not in self._lost:
                log.warning("job interrupted; giving it back to the queue", job=job.key)
                with contextlib.suppress(Exception):
                    await asyncio.shield(asyncio.to_thread(self.store.release, job.key, self.owner))
                raise
        finally:
            keeper.cancel()
            self._lost.discard(job.key)

    def _failed_provenance(self, job: Job, validated: Validated, duration_s: float) -> Provenance:
        """What a failed run reports it ran: its release's pipeline, even if that never started."""
        try:
            harmoniser = self.harmoniser_of(job)
        except PipelineFailed:
            harmoniser = self.harmoniser
        return harmoniser.failed_provenance(validated, duration_s)

    async def _run_job(self, job: Job) -> None:
        validated = Validated.model_validate_json(job.request)
        sid, key = job.submission_id, job.key
        rundir = self.rundir(key)
        campaign_id = job.rerun.campaign_id if job.rerun else None
        resume = job.attempts > 1
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
                    self.store.set_pgid(key, self.owner, pgid)

                harmoniser = self.harmoniser_of(job)
                outputs, provenance = await harmoniser.execute(validated, rundir, resume, on_process)
                event = harmonised_event(
                    validated, "succeeded", outputs, provenance, job.attempts, campaign_id=campaign_id
                )
                if not await asyncio.to_thread(
                    self.store.finish, key, self.owner, "succeeded", event.model_dump_json()
                ):
                    log.error(
                        "lease lost before the outcome was stored; not reporting it", attempt=job.attempts
                    )
                    return
                log.info(
                    "job succeeded",
                    attempt=job.attempts,
                    outputs=len(outputs),
                    duration_s=provenance.duration_s,
                )
                await asyncio.to_thread(shutil.rmtree, rundir, ignore_errors=True)
            except asyncio.CancelledError:
                if key in self._lost:
                    log.warning("job stopped: its lease was lost", attempt=job.attempts)
                raise
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                log_tail = exc.log_tail if isinstance(exc, PipelineFailed) else ""
                message = f"{type(exc).__name__}: {exc}" if not isinstance(exc, PipelineFailed) else str(exc)
                log_tail = f"{message}\n{log_tail}".strip()
                if key in self._lost:
                    log.warning("job stopped: its lease was lost", attempt=job.attempts, error=message)
                    return
                if not self.relaunches.exhausted(job.attempts):
                    log.warning("job failed; relaunching later", attempt=job.attempts, error=message)
                    await asyncio.to_thread(
                        self.store.retry_later, key, self.owner, self.relaunches.pause(job.attempts), log_tail
                    )
                    return
                log.error("job failed for good", attempts=job.attempts, error=message)
                event = harmonised_event(
                    validated,
                    "failed",
                    [],
                    self._failed_provenance(job, validated, time.monotonic() - started),
                    job.attempts,
                    log_tail[-8000:],
                    campaign_id=campaign_id,
                )
                if not await asyncio.to_thread(
                    self.store.finish, key, self.owner, "failed", event.model_dump_json(), log_tail
                ):
                    log.error(
                        "lease lost before the outcome was stored; not reporting it", attempt=job.attempts
                    )
                    return
            finally:
                telemetry.unbind(bound)
            finished = await asyncio.to_thread(self.store.get, key)
            assert finished is not None
            try:
                await self.report(finished)
            except Exception:
                log.exception("cannot send harmonised yet; will retry", submission_id=sid)
