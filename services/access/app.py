"""The access service: indexed and harmonised events in (its own projection of what the
catalogue holds, for discovery, and of the files, as DRS objects), requests, decisions and revocations over HTTP, their events out; and a timer
that publishes the audit ledger's head and sends any event the broker did not take at once.

Only wiring lives here: the rules are in ``grants``, ``ledger``, ``discovery``, ``store``
and ``api``.
"""

from __future__ import annotations

import asyncio
import functools
from datetime import UTC, datetime

from services.access.api import AccessApi, install
from services.access.delivery import Delivery
from services.access.discovery import KnownSample
from services.access.objects import objects_of
from services.access.passports import Passports, VisaKey
from services.access.store import AccessStore, KnownRecall
from services.access.tickets import url_secret
from shared.auth import Tokens
from shared.bus import Service
from shared.config import AccessSettings
from shared.encryption import check_archive_key
from shared.envelope import Envelope, derive_id
from shared.events import AuditHead, Event, FileStaged, Harmonised, Indexed, RecallUpdated
from shared.headers import HeaderStore
from shared.storage import use_s3_endpoint
from shared.telemetry import get_logger
from shared.tiers import ArchiveTiers

log = get_logger(__name__)


def build() -> Service:
    settings = AccessSettings()
    service = Service("access", settings)
    store = AccessStore(settings.database_url)
    service.readiness.append(store.readiness())

    async def emit(event: Event, event_id: str) -> None:
        await service.emit(event, event_id=event_id)

    use_s3_endpoint(settings.archive.s3_endpoint_url)
    delivery = Delivery(
        headers=HeaderStore.of(settings.archive),
        # Read at the first working copy, not at start: discovery, requests and decisions
        # need no archive key, and a service without one answers 503 for copies only.
        archive_key=functools.cache(lambda: check_archive_key(settings.archive.key)),
        url_secret=url_secret(
            settings.url_secret.get_secret_value() if settings.url_secret else None,
            settings.state.state_dir,
        ),
        url_minutes=settings.url_minutes,
        tiers=ArchiveTiers.of(settings.tiers),
    )
    passports = Passports(
        VisaKey.of(
            settings.visa_key.get_secret_value() if settings.visa_key else None, settings.state.state_dir
        ),
        (settings.passport_issuer or f"http://127.0.0.1:{settings.port}").rstrip("/"),
    )
    api = AccessApi(store, emit, settings.grant_days, delivery=delivery, passports=passports)
    install(service.web, api, Tokens(settings.access.tokens))

    async def on_indexed(envelope: Envelope[Indexed]) -> None:
        sub = envelope.data.submission
        sample = KnownSample(
            region=sub.region,
            sample_id=sub.sample_id,
            patient_id=sub.patient_id,
            analysis_type=sub.analysis_type,
            received_at=sub.received_at,
            accepted=envelope.data.accepted,
        )
        changed = await asyncio.to_thread(store.project, sample, envelope.id)
        log.info("sample known", region=sub.region.value, sample_id=sub.sample_id, changed=changed)

    service.on(Indexed, on_indexed)

    async def on_harmonised(envelope: Envelope[Harmonised]) -> None:
        sub = envelope.data.submission
        added = await asyncio.to_thread(store.project_objects, objects_of(envelope.data))
        log.info("files known", region=sub.region.value, sample_id=sub.sample_id, new=added)

    service.on(Harmonised, on_harmonised)

    async def on_recall_updated(envelope: Envelope[RecallUpdated]) -> None:
        told = envelope.data
        known = KnownRecall(told.path, told.recall_id, told.state, told.expected_at, None, told.updated_at)
        changed = await asyncio.to_thread(store.project_recall, known)
        log.info("recall told", recall_id=told.recall_id, state=told.state, changed=changed)

    async def on_file_staged(envelope: Envelope[FileStaged]) -> None:
        staged = envelope.data
        known = KnownRecall(
            staged.path, staged.recall_id, "COMPLETED", None, staged.pinned_until, staged.staged_at
        )
        changed = await asyncio.to_thread(store.project_recall, known)
        log.info("file staged", recall_id=staged.recall_id, changed=changed)

    service.on(RecallUpdated, on_recall_updated)
    service.on(FileStaged, on_file_staged)

    async def publish_head() -> None:
        try:
            await api.send_pending()
            entries, head = await asyncio.to_thread(store.head)
            if entries == 0:
                return
            event = AuditHead(entries=entries, head_sha256=head, published_at=datetime.now(UTC))
            # One id per head: publishing an unchanged head again is the same event.
            await service.emit(event, event_id=derive_id(head, "access", event.ce_type()))
            log.info("audit head published", entries=entries, head_sha256=head)
        except Exception:  # a timer that raises stops the service: log, try at the next tick
            log.exception("publishing the audit head failed; trying again at the next tick")

    service.timer(settings.audit_head_interval)(publish_head)
    return service
