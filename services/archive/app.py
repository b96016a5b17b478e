"""The archive service: file-received and harmonised in (the bodies it learns, on the hot
tier), and on a timer one round: finish moves a crash left open, run the lifecycle's due
moves, advance the recalls and the reanalysis campaigns; then send tier-moved, file-staged,
recall-updated and reharmonisation-requested for what the broker has not acknowledged yet. One replica at a time runs the rounds, under a named lease that a heartbeat
renews; a move stops at its next step once the lease is lost.

Only wiring lives here: the rules are in ``tiers``, ``moves``, ``recalls``, ``reanalysis`` and
``learning``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from services.archive.estimates import expected_staged
from services.archive.learning import arrivals
from services.archive.moves import Mover
from services.archive.placement import Move, PlacementStore, leases
from services.archive.reanalysis import Campaigns
from services.archive.recalls import UNDER_WAY, Recaller, RecallPolicy
from shared.bus import Service
from shared.config import ArchiveServiceSettings
from shared.database import Lease, LeaseHeld, NamedLeases
from shared.envelope import Envelope, RefusedEvent, derive_id
from shared.events import (
    INCONSISTENT,
    FileReceived,
    FileStaged,
    Harmonised,
    RecallRequested,
    RecallUpdated,
    Region,
    ReharmonisationRequested,
    TierMoved,
    sample_key,
)
from shared.storage import use_s3_endpoint
from shared.telemetry import get_logger
from shared.tiers import FolderTier, Tier, TierName, cold_tier

log = get_logger(__name__)


def now() -> datetime:
    return datetime.now(UTC)


def archive_parts(
    settings: ArchiveServiceSettings,
) -> tuple[PlacementStore, dict[TierName, Tier], Recaller, Campaigns]:
    """The store, the tiers, the recaller and the campaigns as the settings make them (the
    service and the operator commands share them)."""
    use_s3_endpoint(settings.tiers.archive.s3_endpoint_url)
    tiers = settings.tiers
    cold = cold_tier(
        tiers.url("cold"),
        storage_class=tiers.cold_storage_class,
        delay=tiers.recall_delay,
        drives=tiers.drives,
    )
    placed: dict[TierName, Tier] = {
        "hot": FolderTier("hot", tiers.url("hot")),
        "warm": FolderTier("warm", tiers.url("warm")),
        "cold": cold,
    }
    store = PlacementStore(settings.database_url)
    policy = RecallPolicy(
        drives=tiers.drives,
        pin=timedelta(hours=tiers.pin_hours),
        attempts=settings.recall_attempts,
        backoff=timedelta(seconds=settings.recall_backoff),
    )
    recaller = Recaller(store, cold, policy, now)
    return store, placed, recaller, Campaigns(store, recaller, now)


def _sample(sample: str) -> tuple[Region, str]:
    """(region, pseudonym) of a sample key as the store keeps it (``<region>/<pseudonym>``)."""
    region, sample_id = sample.split("/")[:2]
    return Region(region), sample_id


def build() -> Service:
    settings = ArchiveServiceSettings()
    service = Service("archive", settings)
    store, placed, recaller, campaigns = archive_parts(settings)
    service.readiness.append(store.readiness())
    lease_length = timedelta(seconds=max(3 * settings.round_interval, settings.lease_seconds))
    rounds = NamedLeases(store, leases, lease_length)
    store_url = settings.tiers.url("hot")

    async def on_arrival(envelope: Envelope[FileReceived] | Envelope[Harmonised]) -> None:
        found = arrivals(envelope.data, store_url)
        new = [
            await asyncio.to_thread(store.learn, a.path, a.sample, a.kind, a.size, now(), a.submission_id)
            for a in found
        ]
        log.info("bodies known", new=sum(new), named=len(found))

    async def on_harmonised(envelope: Envelope[Harmonised]) -> None:
        await on_arrival(envelope)
        done = envelope.data
        if done.campaign_id is not None:
            counted = await asyncio.to_thread(
                campaigns.harmonised, done.campaign_id, done.submission.submission_id, done.status == "succeeded"
            )
            log.info("campaign rerun reported", campaign_id=done.campaign_id, status=done.status, new=counted)

    service.on(FileReceived, on_arrival)
    service.on(Harmonised, on_harmonised)

    async def on_recall_requested(envelope: Envelope[RecallRequested]) -> None:
        asked = envelope.data
        sample = sample_key(asked.region, asked.sample_id)
        for path in asked.paths:
            known = await asyncio.to_thread(store.file, path)
            if known is not None and known.sample != sample:  # e.g. a harmonised output of another sample
                raise RefusedEvent(INCONSISTENT, f"{path} is a body of {known.sample}, not of {sample}")
        try:
            new = await asyncio.to_thread(recaller.request, asked.recall_id, asked.requested_by, asked.paths)
        except ValueError as exc:  # a body the archive does not know: nothing to recall, nothing changed
            raise RefusedEvent("unknown_body", str(exc)) from None
        log.info("recall requested", recall_id=asked.recall_id, files=len(asked.paths), new=new)

    service.on(RecallRequested, on_recall_requested)
    recall_duration = timedelta(seconds=settings.tiers.recall_delay)

    def one_round(lease: Lease) -> None:
        def still_held(_step: str, _move: Move) -> None:
            lease.check()  # lost (the heartbeat could not renew it): stop before the next step

        mover = Mover(store, placed, now, still_held)
        mover.resume()
        for move in mover.cool(settings.tiers.lifecycle):
            log.info("moved", path=move.path, source=move.source, target=move.target, state=move.state)
        for staged in recaller.tick():
            log.info("staged", recall_id=staged.request_id, path=staged.path, tier=staged.tier)
        campaigns.advance()

    async def send_pending() -> None:
        for move in await asyncio.to_thread(store.unemitted):
            file = await asyncio.to_thread(store.file, move.path)
            assert file is not None and file.sha256 is not None  # a done move recorded the digest
            region, sample_id = _sample(file.sample)
            moved = TierMoved(
                region=region,
                sample_id=sample_id,
                path=move.path,
                source=move.source,
                target=move.target,
                sha256=file.sha256,
                moved_at=move.updated_at,
            )
            cause = f"move|{move.path}|{move.id}"
            await service.emit(moved, event_id=derive_id(cause, "archive", moved.ce_type()))
            await asyncio.to_thread(store.mark_emitted, move.id)
        for recalled in await asyncio.to_thread(store.unemitted_staged):
            assert recalled.finished_at is not None and recalled.pinned_until is not None
            placed_file = await asyncio.to_thread(store.file, recalled.path)
            assert placed_file is not None
            region, sample_id = _sample(placed_file.sample)
            staged = FileStaged(
                region=region,
                sample_id=sample_id,
                path=recalled.path,
                recall_id=recalled.request_id,
                tier=placed_file.tier,
                staged_at=recalled.finished_at,
                pinned_until=recalled.pinned_until,
            )
            cause = f"staged|{recalled.request_id}|{recalled.path}"
            await service.emit(staged, event_id=derive_id(cause, "archive", staged.ce_type()))
            await asyncio.to_thread(store.mark_staged_emitted, recalled)
        await announce_recalls()
        await ask_for_reruns()

    async def ask_for_reruns() -> None:
        """reharmonisation-requested for each campaign run whose raw reads are all readable."""
        for run in await asyncio.to_thread(campaigns.staged):
            campaign = await asyncio.to_thread(campaigns.campaign, run.campaign_id)
            assert campaign is not None
            region, sample_id = _sample(run.sample)
            asked = ReharmonisationRequested(
                campaign_id=run.campaign_id,
                region=region,
                sample_id=sample_id,
                submission_id=run.submission_id,
                sarek_version=campaign.sarek_version,
                requested_at=now(),
            )
            cause = f"rerun|{run.campaign_id}|{run.submission_id}"
            await service.emit(asked, event_id=derive_id(cause, "archive", asked.ce_type()))
            await asyncio.to_thread(campaigns.requested, run)

    async def announce_recalls() -> None:
        """recall-updated for every file whose state changed, with the scheduler's estimate
        while it is under way (the catalogue shows it, DRS tells a client when to come back)."""
        told = await asyncio.to_thread(store.unannounced)
        if not told:
            return
        under_way = await asyncio.to_thread(store.recall_files, None, UNDER_WAY)
        expected = expected_staged(under_way, settings.tiers.drives, recall_duration, now())
        for file in told:
            estimate = expected.get((file.request_id, file.path))
            if file.state in UNDER_WAY and estimate is None:
                continue  # its state moved on between the two reads: told at the next round
            known = await asyncio.to_thread(store.file, file.path)
            assert known is not None  # recalls name known bodies only
            region, sample_id = _sample(known.sample)
            updated = RecallUpdated(
                region=region,
                sample_id=sample_id,
                path=file.path,
                recall_id=file.request_id,
                state=file.state,
                expected_at=estimate if file.state in UNDER_WAY else None,
                reason=file.reason[:128] if file.reason else None,
                updated_at=now(),
            )
            cause = f"recall|{file.request_id}|{file.path}|{file.standing}"
            await service.emit(updated, event_id=derive_id(cause, "archive", updated.ce_type()))
            await asyncio.to_thread(store.mark_announced, file)

    async def round_of_the_tiers() -> None:
        try:
            lease = await asyncio.to_thread(rounds.acquire, "rounds")
        except LeaseHeld:
            return  # another replica runs the rounds

        async def heartbeat() -> None:
            """Keep the lease through a round's long copies (a 500 GB body takes minutes)."""
            while await asyncio.to_thread(rounds.renew, lease):
                await asyncio.sleep(lease_length.total_seconds() / 3)

        beating = asyncio.create_task(heartbeat())
        try:
            await asyncio.to_thread(one_round, lease)
            await send_pending()
        except Exception:  # a timer that raises stops the service: log, try at the next round
            log.exception("a round of the tiers failed; trying again at the next round")
        finally:
            beating.cancel()
            await asyncio.to_thread(rounds.release, lease)

    service.timer(settings.round_interval)(round_of_the_tiers)
    return service
