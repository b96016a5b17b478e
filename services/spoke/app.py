"""The spoke service: a region's mirror of the national catalogue, beside the region's own
broker, to which MirrorMaker 2 carries the region's signed feed from the hub.

Only wiring lives here: ``verifier`` decides what to believe, ``store`` shows whole revisions
only, ``api`` serves them, and ``portal`` is the region's web pages over them and the hub's
access service. The feed is read from its start at every start, committed records
only and in no group: the verifier's state is what it read, and the revision the store shows
is its floor, so that revision is proven again and nothing older is ever taken (a killed
spoke comes back on its last complete revision; one that lost its database rebuilds it from
the compacted feed). Each refusal is logged with its reason and counted, and changes
nothing. Each revision shown is acknowledged to the hub (``spoke-revision-applied``) when the
hub's broker is configured, apart from the feed's loop; an acknowledgement that cannot be
sent is not retried, since the next revision's says more.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from services.spoke.api import install
from services.spoke.hub import HubAccess
from services.spoke.portal import install as install_portal
from services.spoke.store import SpokeStore
from services.spoke.verifier import FeedVerifier, Revision
from shared.auth import Tokens
from shared.bus import Service, follow, publish
from shared.config import SettingsError, SpokeSettings
from shared.envelope import derive_id
from shared.events import SpokeRevisionApplied
from shared.feed import FeedRefusal, HubKeyError, read_hub_public_key
from shared.metrics import SPOKE_REFUSED, SPOKE_REVISION
from shared.telemetry import get_logger
from shared.topics import SPOKE, feed_topic, spoke_principal

log = get_logger(__name__)


def build() -> Service:
    settings = SpokeSettings()
    region = settings.region
    if region is None:
        raise SettingsError("spoke cannot start: set GENOMHUB_SPOKE_REGION to the region whose spoke this is")
    try:
        pinned = read_hub_public_key(settings.pinned_path())
    except HubKeyError as exc:
        raise SettingsError(f"spoke cannot start: {exc}") from None
    principal = spoke_principal(region)
    service = Service(SPOKE, settings, principal=principal, topics=[feed_topic(region)])
    store = SpokeStore(settings.database_url, feed_topic(region))
    service.readiness.append(store.readiness())
    tokens = Tokens(settings.access.tokens)
    install(service.web, store, region, tokens)
    hub = HubAccess(settings.hub_access_url, settings.hub_ca_bundle) if settings.hub_access_url else None
    install_portal(service.web, store, region, tokens, hub)
    if hub is not None:

        async def close_hub(_: object) -> None:
            await hub.close()

        service.web.on_cleanup.append(close_hub)

    def refused(refusal: FeedRefusal, floor: int, caught_up: bool) -> None:
        SPOKE_REFUSED.labels(refusal.reason).inc()
        if refusal.reason == "rollback" and not caught_up and floor:
            # Reading the feed again from its start meets the checkpoints before the revision
            # shown (until compaction takes them): history, not an attack.
            log.debug("checkpoint before the revision shown passed over", detail=str(refusal))
            return
        log.warning("feed record refused", reason=refusal.reason, detail=str(refusal))

    async def acknowledge(revision: Revision, samples: int) -> None:
        if not settings.hub_kafka.bootstrap:
            return
        applied = SpokeRevisionApplied(
            region=region,
            revision=revision.revision,
            upto=revision.upto,
            state_hash=revision.state_hash,
            samples=samples,
            applied_at=datetime.now(UTC),
        )
        event_id = derive_id(f"{store.feed}:{revision.revision}", SPOKE, SpokeRevisionApplied.ce_type())
        try:
            await publish(
                [(applied, event_id)], service.source, settings.hub_kafka, settings.state, principal=principal
            )
        except Exception as exc:  # the hub is away: the next revision's acknowledgement says more
            log.warning("revision not acknowledged to the hub", revision=revision.revision, error=str(exc))

    signatures = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="feed-signatures")
    newest: list[tuple[Revision, int]] = []
    to_acknowledge = asyncio.Event()

    @service.task
    async def acknowledge_the_newest() -> None:
        """Apart from the feed's loop, so that a hub out of reach never holds up what the spoke
        shows; only the newest revision shown is acknowledged, once."""
        while True:
            await to_acknowledge.wait()
            to_acknowledge.clear()
            revision, samples = newest[-1]
            await acknowledge(revision, samples)

    @service.task
    async def follow_the_feed() -> None:
        shown = await asyncio.to_thread(store.shown)
        floor = shown.revision if shown is not None else 0
        verifier = FeedVerifier(region, pinned, floor=floor)
        whole = True  # the first revision of a run replaces what the store shows
        if shown is not None:
            SPOKE_REVISION.set(shown.revision)
        async for records, caught_up in follow(service.access, [store.feed]):
            opened = await asyncio.to_thread(verifier.opened, [r.value for r in records], signatures)
            for record, value in zip(records, opened, strict=True):
                try:
                    outcome = verifier.receive(record.partition, record.key, value)
                except FeedRefusal as refusal:
                    refused(refusal, floor, caught_up)
                    continue
                for checkpoint_refused in outcome.refused:
                    refused(checkpoint_refused, floor, caught_up)
                revision = outcome.revision
                if revision is None:
                    continue
                await asyncio.to_thread(store.apply, revision, whole=whole)
                whole = False
                SPOKE_REVISION.set(revision.revision)
                log.info(
                    "revision shown",
                    revision=revision.revision,
                    upto=revision.upto,
                    samples=len(revision.samples),
                )
                newest[:] = [(revision, len(revision.samples))]
                to_acknowledge.set()

    return service
