"""The indexer service: harmonised and rejected-validated events in, the catalogue upserted,
indexed events out; the catalogue's read API on the service's HTTP server.

Only wiring lives here: the rules are in ``catalogue`` (the fold), ``store`` (the database)
and ``api`` (the HTTP routes). A validated event that passed QC is kept on the submission's
timeline (it brings QC's read count, reference profile and policy), but the sample is indexed,
and ``indexed`` emitted, only when its outcome arrives: rejection, or harmonisation.
"""

from __future__ import annotations

import asyncio

from services.indexer.api import install
from services.indexer.catalogue import CatalogueEvent
from services.indexer.store import Catalogue
from shared.auth import Tokens
from shared.bus import Service
from shared.config import IndexerSettings
from shared.envelope import Envelope
from shared.events import Harmonised, Validated
from shared.telemetry import get_logger

log = get_logger(__name__)


def build() -> Service:
    settings = IndexerSettings()
    service = Service("indexer", settings)
    catalogue = Catalogue(settings.database_url)
    catalogue.migrate()
    install(service.web, catalogue, Tokens(settings.access.tokens))
    service.readiness.append(catalogue.readiness())

    async def index(envelope: Envelope[Validated] | Envelope[Harmonised]) -> None:
        event = CatalogueEvent.from_envelope(envelope)
        applied = await asyncio.to_thread(catalogue.apply, event)
        record = applied.record
        log.info(
            "indexed" if event.is_outcome else "kept on the timeline",
            sample_id=record.sample_id,
            region=record.submission.region.value,
            status=record.status.value if record.status else None,
            new=applied.new,
        )
        if event.is_outcome:
            # Announces the submission as now folded; a duplicate re-sends the same id.
            await service.emit(record.indexed_event(), cause=envelope)

    async def on_harmonised(envelope: Envelope[Harmonised]) -> None:
        await index(envelope)

    async def on_validated(envelope: Envelope[Validated]) -> None:
        await index(envelope)

    service.on(Harmonised, on_harmonised)
    service.on(Validated, on_validated)
    return service
