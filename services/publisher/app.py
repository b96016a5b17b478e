"""The publisher service: each spoke's signed catalogue feed, from the catalogue's ``indexed``
events and the access service's requests, decisions and revocations.

Only wiring lives here: what a spoke may see is ``projection``, numbering, signing and
checkpoints are ``writer``. One replica writes every feed, the holder of the lease on them
(the others wait for it), because a feed's sequence numbers are one writer's count. Its
writes are Kafka transactions under one transactional id, so a holder that lost its lease
without knowing it (paused past it) is fenced by its successor's first write instead of
doubling a number a spoke checks. A rollover is a restart with the new key and, as the
previous one, the key that signs the feeds: the new key is announced on every partition of
every feed, signed by the old, before anything it signs.

The projection is held in memory and rebuilt at every start: the holder restores each
feed's writer from the feed (what the spoke has), then reads its subscriptions whole, from
the log's start, and publishes only once that reading has reached the log's end as it stood
at the start. So a restart publishes no body a spoke already has, and never shows for a
moment what a later record of the log takes back (a grant revoked on another topic). From
then on the changes are published every ``publish_interval``, coalesced per spoke and sample,
with checkpoints when ``FeedWriter.due`` says and grants ended at their time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer

from services.publisher.api import install
from services.publisher.projection import Change, Projection
from services.publisher.store import FEEDS_LEASE, PublisherStore
from services.publisher.writer import FeedWriter, Record, Stored
from shared.auth import Tokens
from shared.bus import Service, partitions_of, read_records, transactional_producer
from shared.config import PublisherSettings, SettingsError
from shared.database import Lease, LeaseHeld
from shared.envelope import Envelope, RefusedEvent
from shared.events import (
    INCONSISTENT,
    AccessDecided,
    AccessRequested,
    AccessRevoked,
    Indexed,
    Region,
    SpokeRevisionApplied,
)
from shared.feed import HubKeyError, SampleBody, entry_key, hub_signing_key, key_id, previous_hub_key
from shared.telemetry import get_logger
from shared.topics import PUBLISHER_TRANSACTIONAL_ID, feed_topic

log = get_logger(__name__)

TRANSACTION_RECORDS = 5000
"""Entries per transaction at most: a national first sync is many short transactions, each
well inside the broker's transaction timeout."""


def _chunks(items: list[tuple[Region, SampleBody]], size: int) -> Iterator[list[tuple[Region, SampleBody]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def build() -> Service:
    settings = PublisherSettings()
    service = Service("publisher", settings, whole_log=True)
    try:
        key = hub_signing_key(settings.hub)
        previous = previous_hub_key(settings.hub)
    except HubKeyError as exc:
        raise SettingsError(f"publisher cannot start: {exc}") from None
    store = PublisherStore(settings.database_url, timedelta(seconds=settings.lease_seconds))
    service.readiness.append(store.readiness())
    projection = Projection()
    pending: dict[tuple[Region, str], SampleBody] = {}
    writers: dict[Region, FeedWriter] = {}
    shown: dict[Region, SpokeRevisionApplied] = {}

    def changed(changes: list[Change]) -> None:
        for spoke, body in changes:  # the last body of a spoke's sample is the one to publish
            pending[(spoke, entry_key(body))] = body

    async def on_indexed(envelope: Envelope[Indexed]) -> None:
        changed(projection.indexed(envelope.data, datetime.now(UTC)))

    async def on_requested(envelope: Envelope[AccessRequested]) -> None:
        changed(projection.requested(envelope.data, datetime.now(UTC)))

    async def on_decided(envelope: Envelope[AccessDecided]) -> None:
        changed(projection.decided(envelope.data, datetime.now(UTC)))

    async def on_revoked(envelope: Envelope[AccessRevoked]) -> None:
        changed(projection.revoked(envelope.data, datetime.now(UTC)))

    service.on(Indexed, on_indexed)
    service.on(AccessRequested, on_requested)
    service.on(AccessDecided, on_decided)
    service.on(AccessRevoked, on_revoked)

    async def on_spoke_revision(envelope: Envelope[SpokeRevisionApplied]) -> None:
        applied = envelope.data
        published = writers[applied.region].revision  # restored before anything is consumed
        if applied.revision > published:  # the broker cannot bind what a spoke says to who it is
            raise RefusedEvent(
                INCONSISTENT,
                f"{applied.region.value}'s spoke shows revision {applied.revision}; the hub published {published}",
            )
        current = shown.get(applied.region)
        if current is None or applied.revision >= current.revision:  # acknowledgements may come late
            shown[applied.region] = applied

    service.on(SpokeRevisionApplied, on_spoke_revision)
    install(service.web, writers, shown, Tokens(settings.access.tokens))

    async def restore(region: Region) -> tuple[FeedWriter, list[tuple[FeedWriter, Record]]]:
        """The region's writer, from its feed; during a rollover (the feed signed by the
        previous key) also the announcements of the new key, to be sent before anything else."""
        topic = feed_topic(region)
        partitions = len(await partitions_of(service.access, topic))
        records = await read_records(
            service.access, [topic], timeout=settings.restore_timeout, committed=True
        )
        stored = [Stored(r.partition, r.offset, r.value) for r in records]
        every, interval = settings.checkpoint_every, settings.checkpoint_interval
        announced: list[tuple[FeedWriter, Record]] = []
        try:
            writer = FeedWriter.restore(region, key, partitions, stored, every, interval)
        except HubKeyError:
            if previous is None:
                raise
            writer = FeedWriter.restore(region, previous, partitions, stored, every, interval)
            announced = [(writer, r) for r in writer.roll_over(key, datetime.now(UTC))]
        log.info(
            "feed restored", feed=topic, seq=writer.seq, revision=writer.revision, samples=writer.samples
        )
        return writer, announced

    async def send(producer: AIOKafkaProducer, sent: list[tuple[FeedWriter, Record]]) -> None:
        futures = [
            await producer.send(writer.feed, record.value, key=record.key, partition=record.partition)
            for writer, record in sent
        ]
        for (writer, record), delivered in zip(sent, await asyncio.gather(*futures), strict=True):
            writer.delivered(record.partition, delivered.offset)

    async def publish_round(producer: AIOKafkaProducer, lease: Lease) -> None:
        now = datetime.now(UTC)
        changed(projection.expire(now))
        bodies = [(spoke, body) for (spoke, _), body in sorted(pending.items(), key=lambda item: item[0])]
        pending.clear()
        for chunk in _chunks(bodies, TRANSACTION_RECORDS):
            lease.check()
            entries = [
                (writers[spoke], r) for spoke, body in chunk if (r := writers[spoke].publish(body, now))
            ]
            if not entries:
                continue
            async with producer.transaction():
                await send(producer, entries)
                await send(producer, [(w, w.checkpoint(now)) for w in writers.values() if w.due(now)])
        lease.check()
        if due := [(w, w.checkpoint(now)) for w in writers.values() if w.due(now)]:
            async with producer.transaction():
                await send(producer, due)

    async def write_feeds(lease: Lease) -> None:
        # The producer first: its start fences a writer that lost the lease and aborts its open
        # transaction, so the feeds read next are all that will ever be committed of it.
        async with transactional_producer(service.access, PUBLISHER_TRANSACTIONAL_ID) as producer:
            announcements = []
            for region in Region:
                writers[region], announced = await restore(region)
                announcements += announced
            if announcements:
                async with producer.transaction():
                    await send(producer, announcements)
                log.info("hub key rolled over on every feed", key_id=key_id(key.public_key()))
            service.start_consuming()
            await service.caught_up.wait()
            log.info("caught up with the log; publishing", changes=len(pending))
            while True:
                await publish_round(producer, lease)
                await asyncio.sleep(settings.publish_interval)

    @service.task
    async def hold_the_feeds() -> None:
        while True:
            try:
                async with store.leases.held(FEEDS_LEASE) as lease:
                    log.info("holding the feeds' lease", holder=lease.holder)
                    await write_feeds(lease)
            except LeaseHeld as held:
                log.info("another replica writes the feeds; waiting", holder=held.holder)
                await asyncio.sleep(settings.lease_seconds / 3)

    return service
