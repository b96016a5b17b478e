"""Wiring of the harmoniser: validated events (and campaigns' reharmonisation requests) in,
jobs queued, harmonised events out.

The handler only queues a job (one committed row) and returns, so the consumer keeps
polling while Sarek runs for hours; the job runner runs beside it as an app task. Each job
keeps the trace context of the validated event that caused it, and its harmonised event is
emitted under that context with an id derived from the validated event's id, so one trace
covers the submission and a replay re-emits the very same event.
"""

from __future__ import annotations

import asyncio
from importlib.metadata import version

from services.harmoniser.harmonise import Backend, Harmoniser
from services.harmoniser.jobs import Job, JobStore, Rerun, job_key
from services.harmoniser.local import PIPELINE, LocalBackend
from services.harmoniser.runner import JobRunner
from services.harmoniser.sarek import SarekBackend, SarekOptions
from shared import telemetry
from shared.bus import Service
from shared.config import HarmoniserSettings
from shared.encryption import ArchiveKey, check_archive_key
from shared.envelope import Envelope, RefusedEvent, derive_id, require_archived
from shared.events import INCONSISTENT, Harmonised, ReharmonisationRequested, Validated, Verdict
from shared.storage import ArchiveReader, ArchiveWriter, use_s3_endpoint
from shared.tiers import ArchiveTiers, require_readable

log = telemetry.get_logger(__name__)
TRACE_HEADERS = ("traceparent", "tracestate")


def make_harmoniser(
    settings: HarmoniserSettings, key: ArchiveKey | None = None, rerun_release: str | None = None
) -> Harmoniser:
    """The configured backend, with the provenance it reports, reading and writing the archive
    with ``key`` (the service's, checked at its start; else the configured key, loaded now);
    ``rerun_release``: the same backend running that Sarek release for a reanalysis campaign."""
    if rerun_release is not None:
        settings = settings.model_copy(update={"sarek_version": rerun_release})
    backend: Backend
    if settings.backend == "sarek":
        backend = SarekBackend(
            SarekOptions(
                version=settings.sarek_version,
                profile=settings.sarek_profile,
                config=settings.sarek_config,
                genome=settings.sarek_genome,
                tools=settings.sarek_tools,
                igenomes_base=settings.sarek_igenomes_base,
                nextflow=settings.nextflow,
            ),
            settings.pacvar_version,
        )
        pipeline, pipeline_version, reference = (
            "nf-core/sarek",
            settings.sarek_version,
            settings.sarek_genome,
        )
    else:
        backend = LocalBackend(
            settings.reference.required_fasta(),
            settings.state.cache,
            settings.threads,
            settings.sarek_version,
        )
        pipeline, pipeline_version, reference = PIPELINE, version("genomhub"), settings.reference.profile
    if key is None:
        key = check_archive_key(settings.archive.key)
    return Harmoniser(
        backend,
        store_url=settings.archive.store_url,
        writer=ArchiveWriter.of(settings.archive, key),
        pipeline=pipeline,
        pipeline_version=pipeline_version,
        reference=reference,
        guideline_version=settings.guideline.version,
        archive=ArchiveReader.of(settings.archive, key, ArchiveTiers.of(settings.tiers)),
        rerun_release=rerun_release,
    )


def build() -> Service:
    settings = HarmoniserSettings()
    use_s3_endpoint(settings.archive.s3_endpoint_url)
    service = Service("harmoniser", settings)
    tiers = ArchiveTiers.of(settings.tiers)
    store = JobStore(settings.database_url)

    async def emit(job: Job, event: Harmonised) -> None:
        with service.tracer.start_as_current_span(
            "harmoniser report", context=telemetry.extract(job.trace_headers)
        ):
            await service.emit(event, event_id=job.event_id)

    runner = JobRunner(
        store,
        make_harmoniser(settings, service.archive_key),
        emit,
        rerun_harmoniser=lambda release: make_harmoniser(settings, service.archive_key, release),
        runs_dir=settings.state.state_dir / "harmoniser" / "runs",
        concurrency=settings.concurrency,
        retries=settings.retries,
        retry_delay=settings.retry_delay,
        heartbeat_interval=settings.heartbeat_interval,
        lease=settings.lease,
    )

    async def on_validated(envelope: Envelope[Validated]) -> None:
        validated = envelope.data
        if validated.verdict != Verdict.ACCEPTED:
            return
        require_archived(
            settings.archive.store_url,
            [f.url for f in validated.files],
        )
        if await asyncio.to_thread(store.get, validated.submission.submission_id) is None:
            # A new run reads its inputs: on tape, it waits for their recall (dead-lettered as
            # needs_recall, nothing queued) rather than fail as a broken sample would. A known
            # job (a replay) reads nothing and re-emits what it stored.
            await asyncio.to_thread(require_readable, tiers, [f.url for f in validated.files])
        job, created = await asyncio.to_thread(
            store.enqueue,
            validated.submission.submission_id,
            envelope.id,
            derive_id(envelope.id, service.name, Harmonised.ce_type()),
            validated.model_dump_json(),
            [(k, v) for k, v in envelope.headers if k in TRACE_HEADERS],
        )
        if created:
            log.info("job queued", policy=validated.harmonisation.policy.value)
            runner.wake()
        elif job.finished and job.result is not None:
            log.info("job already finished; re-emitting its harmonised event", state=job.state)
            await runner.report(job)
        else:
            log.info("job already queued", state=job.state)

    async def on_reharmonisation(envelope: Envelope[ReharmonisationRequested]) -> None:
        """A campaign's run of a submission harmonised at intake: its own job (one per
        submission and release), from the validated inputs the intake's job kept."""
        asked = envelope.data
        intake = await asyncio.to_thread(store.get, job_key(asked.submission_id))
        if intake is None:
            raise RefusedEvent(
                "unknown_submission", f"no harmonisation at intake of {asked.submission_id} to run again"
            )
        validated = Validated.model_validate_json(intake.request)
        if (validated.submission.region, validated.submission.sample_id) != (asked.region, asked.sample_id):
            raise RefusedEvent(
                INCONSISTENT, f"submission {asked.submission_id} is not of sample {asked.region}/{asked.sample_id}"
            )
        rerun = Rerun(asked.campaign_id, asked.sarek_version)
        if await asyncio.to_thread(store.get, job_key(asked.submission_id, asked.sarek_version)) is None:
            await asyncio.to_thread(require_readable, tiers, [f.url for f in validated.files])
        job, created = await asyncio.to_thread(
            store.enqueue,
            asked.submission_id,
            envelope.id,
            derive_id(envelope.id, service.name, Harmonised.ce_type()),
            intake.request,
            [(k, v) for k, v in envelope.headers if k in TRACE_HEADERS],
            rerun,
        )
        if created:
            log.info("campaign job queued", campaign_id=asked.campaign_id, release=asked.sarek_version)
            runner.wake()
        elif job.finished and job.result is not None:
            await runner.report(job)

    async def run_jobs() -> None:
        await runner.take_over_expired()
        await runner.run()

    service.on(Validated, on_validated)
    service.on(ReharmonisationRequested, on_reharmonisation)
    service.readiness.append(store.readiness())
    service.task(run_jobs)

    @service.timer(settings.heartbeat_interval)
    async def take_over_expired() -> None:
        """Every replica looks for jobs whose owner stopped heartbeating (died, or cut off)."""
        await runner.take_over_expired()

    return service
