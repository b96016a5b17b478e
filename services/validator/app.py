"""The validator service: file-received in, validated out.

Only wiring: the checks live in :mod:`services.validator.validation`. The files are
checked in a pool of worker processes, off the event loop. A rejected submission is
emitted like an accepted one (the indexer shows rejections to uploaders). If the validator
itself fails, the exception reaches the bus, which dead-letters the event: never a silent
accept.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ProcessPoolExecutor

from services.validator.sources import use_archive
from services.validator.validation import InputFile, Outcome, validate, worker_pool
from shared.bus import Service
from shared.config import ValidatorSettings
from shared.envelope import Envelope, require_archived
from shared.events import CheckedFile, FileReceived, StoredFile, Validated
from shared.profiles import SYNTHETIC_NAME
from shared.storage import ArchiveReader, use_s3_endpoint
from shared.telemetry import get_logger
from shared.tiers import ArchiveTiers, require_readable

log = get_logger(__name__)


def to_event(received: FileReceived, outcome: Outcome) -> Validated:
    stored = {f.name: f for f in received.files}
    files = []
    for o in outcome.files:
        original: StoredFile = stored[o.file.name]
        files.append(
            CheckedFile(
                **original.model_dump(),
                detected_type=o.findings.detected_type,
                metrics=o.findings.metrics,
                problems=o.findings.problems,
                conforms=o.conforms,
                accepted=o.accepted,
            )
        )
    return Validated(
        submission=received.submission,
        verdict=outcome.verdict,
        files=files,
        reference_profile=outcome.reference_profile,
        genome_equivalents=outcome.genome_equivalents,
        raw_bases=outcome.raw_bases,
        raw_reads=outcome.raw_reads,
        harmonisation=outcome.harmonisation,
    )


def validate_received(
    received: FileReceived, settings: ValidatorSettings, pool: ProcessPoolExecutor
) -> Validated:
    files = [InputFile(f.name, f.url, f.role, f.sha256, archived_size=f.size) for f in received.files]
    outcome = validate(files, settings, received.submission.analysis_type, pool)
    return to_event(received, outcome)


def build() -> Service:
    settings = ValidatorSettings()
    if settings.reference.profile == SYNTHETIC_NAME:
        settings.reference.required_fasta()  # the synthetic profile is read from it: stop now, not per event
    use_s3_endpoint(settings.archive.s3_endpoint_url)
    service = Service("validator", settings)
    tiers = ArchiveTiers.of(settings.tiers)
    archive = ArchiveReader.of(settings.archive, service.archive_key, tiers)  # a bad key stops it here
    use_archive(archive)  # the first bytes of each file are sniffed in this process
    pool: list[ProcessPoolExecutor] = []

    def executor() -> ProcessPoolExecutor:
        if not pool:
            pool.append(
                worker_pool(settings.workers, s3_endpoint=settings.archive.s3_endpoint_url, archive=archive)
            )
        return pool[0]

    async def handle(envelope: Envelope[FileReceived]) -> None:
        received = envelope.data
        require_archived(settings.archive.store_url, [f.url for f in received.files])
        await asyncio.to_thread(require_readable, tiers, [f.url for f in received.files])
        validated = await asyncio.to_thread(validate_received, received, settings, executor())
        await service.emit(validated, cause=envelope)
        log.info(
            "validated",
            verdict=validated.verdict.value,
            files=len(validated.files),
            problems=sum(len(f.problems) for f in validated.files),
            genome_equivalents=str(validated.genome_equivalents),
        )

    service.on(FileReceived, handle)
    return service
