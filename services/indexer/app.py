"""The indexer service: harmonised and rejected-validated events in, the catalogue upserted,
indexed events out; the catalogue's read API on the service's HTTP server.

Only wiring lives here: the rules are in ``catalogue`` (the fold), ``store`` (the database)
and ``api`` (the HTTP routes). A validated event that passed QC is kept on the submission's
timeline (it brings QC's read count, reference profile and policy), but the sample is indexed,
and ``indexed`` emitted, only when its outcome arrives: rejection, or harmonisation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from services.indexer.api import install
from services.indexer.catalogue import CatalogueEvent
from services.indexer.store import Catalogue
from shared.auth import Tokens
from shared.bus import Consumed, Service
from shared.config import IndexerSettings
from shared.envelope import Envelope
from shared.events import Event, FileStaged, Harmonised, RecallUpdated, TierMoved, Validated
from shared.telemetry import get_logger

log = get_logger(__name__)


def build() -> Service:
    settings = IndexerSettings()
    service = Service("indexer", settings)
    catalogue = Catalogue(settings.database_url)
    catalogue.migrate()
    install(service.web, catalogue, Tokens(settings.access.tokens))
    service.readiness.append(catalogue.readiness())

    async def index(batch: Sequence[Consumed[Validated]] | Sequence[Consumed[Harmonised]]) -> None:
        # A poll batch in one transaction: a national replay commits once per batch.
        events = [CatalogueEvent.from_envelope(consumed.envelope) for consumed in batch]
        applied = await asyncio.to_thread(catalogue.apply_all, events)
        announced: list[tuple[Event, Consumed[Any]]] = []
        causes: list[Consumed[Any]] = list(batch)
        for consumed, event, result in zip(causes, events, applied, strict=True):
            record = result.record
            log.info(
                "indexed" if event.is_outcome else "kept on the timeline",
                sample_id=record.sample_id,
                region=record.submission.region.value,
                status=record.status.value if record.status else None,
                new=result.new,
            )
            if event.is_outcome:
                # Announces the submission as now folded; a duplicate re-sends the same id.
                announced.append((record.indexed_event(), consumed))
        await service.emit_all(announced)

    async def on_harmonised(batch: Sequence[Consumed[Harmonised]]) -> None:
        await index(batch)

    async def on_validated(batch: Sequence[Consumed[Validated]]) -> None:
        await index(batch)

    service.on_batch(Harmonised, on_harmonised)
    service.on_batch(Validated, on_validated)

    # Where the archive keeps each file, and its recall from tape with the estimate: shown
    # beside the file, because it tells a reader how soon a file can be had.
    async def on_tier_moved(envelope: Envelope[TierMoved]) -> None:
        moved = envelope.data
        changed = await asyncio.to_thread(
            catalogue.tier_moved, moved.region, moved.sample_id, moved.path, moved.target
        )
        log.info("tier moved", path=moved.path, tier=moved.target, files=changed)

    async def on_recall_updated(envelope: Envelope[RecallUpdated]) -> None:
        told = envelope.data
        changed = await asyncio.to_thread(
            catalogue.recall_told,
            told.region,
            told.sample_id,
            told.path,
            told.recall_id,
            told.state,
            told.expected_at,
        )
        log.info("recall told", path=told.path, state=told.state, files=changed)

    async def on_file_staged(envelope: Envelope[FileStaged]) -> None:
        staged = envelope.data
        changed = await asyncio.to_thread(
            catalogue.recall_told,
            staged.region,
            staged.sample_id,
            staged.path,
            staged.recall_id,
            "COMPLETED",
            None,
        )
        log.info("file staged", path=staged.path, files=changed)

    service.on(TierMoved, on_tier_moved)
    service.on(RecallUpdated, on_recall_updated)
    service.on(FileStaged, on_file_staged)
    return service
