"""MirrorMaker 2 carries a spoke's signed feed from the hub's broker to the spoke's, under
the same topic name and partition, and the spoke verifies what arrives: a real second KRaft
broker on loopback and Kafka's own MirrorMaker 2, started once for the module."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.publisher.writer import FeedWriter
from services.spoke.verifier import FeedVerifier
from shared.bus import read_records, transactional_producer
from shared.events import Region
from shared.feed import FeedRefusal
from shared.kafka import KafkaAccess
from shared.topics import (
    KAFKA_INTERNAL_TOPICS,
    PUBLISHER_TRANSACTIONAL_ID,
    all_topics,
    feed_topic,
    spoke_feeds,
)
from tests.integration.spoke.feeds import PARTITIONS, Link, hub_topics, produce, summaries
from tests.support import wait_for

SPOKE = Region.SYDDANMARK
TOPIC = feed_topic(SPOKE)


async def cleanup_policy(access: KafkaAccess, topic: str) -> str:
    admin = access.admin()
    await admin.start()
    try:
        (described,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        entries = described.resources[0][4]
        return next(str(e[1]) for e in entries if e[0] == "cleanup.policy")
    finally:
        await admin.close()


def write_feed(link: Link, writer: FeedWriter, names: list[str]) -> int:
    """Entries for ``names`` and their checkpoint on the hub; the records the feed now holds."""
    now = datetime.now(UTC)
    entries = [r for b in summaries(names, now) if (r := writer.publish(b, now)) is not None]
    for record, offset in zip(entries, asyncio.run(produce(link.hub, TOPIC, entries)), strict=True):
        writer.delivered(record.partition, offset)
    asyncio.run(produce(link.hub, TOPIC, [writer.checkpoint(now)]))
    return writer.seq


def spoke_holds(link: Link, count: int) -> Callable[[], list[Any]]:
    def mirrored() -> list[Any]:
        try:
            found = asyncio.run(read_records(link.spoke, [TOPIC], timeout=5))
        except Exception:  # the topic is not on the spoke yet
            return []
        return found if len(found) >= count else []

    return mirrored


def test_the_feed_crosses_to_the_spoke_and_catches_up_after_the_link_was_cut(link: Link) -> None:
    key = Ed25519PrivateKey.generate()
    writer = FeedWriter(SPOKE, key, PARTITIONS)
    held = write_feed(link, writer, [f"M{i}" for i in range(6)])
    arrived = wait_for(spoke_holds(link, held), timeout=90, what=f"MirrorMaker 2 to copy {TOPIC}")
    spoke = FeedVerifier(SPOKE, key.public_key())
    shown = [
        o.revision.revision for r in arrived if (o := spoke.receive(r.partition, r.key, r.value)).revision
    ]
    assert shown == [1] and spoke.state_hash() == writer.state_hash()
    assert {r.partition for r in arrived} == set(range(PARTITIONS))  # partitions keep their numbers
    assert asyncio.run(cleanup_policy(link.spoke, TOPIC)) == "compact"

    # The link is cut; the hub goes on; the link comes back and MM2 resumes where it was.
    link.mirror.stop()
    held = write_feed(link, writer, [f"M{i}" for i in range(6, 10)] + ["M0"])
    assert len(asyncio.run(read_records(link.spoke, [TOPIC], timeout=10))) == len(arrived)
    link.mirror.start(link.hub, link.spoke)
    caught_up = wait_for(spoke_holds(link, held), timeout=90, what="MirrorMaker 2 to catch up")
    refused, later = [], []
    for r in caught_up:  # the whole topic again, as a spoke re-reading it would: the old entries repeat
        try:
            outcome = spoke.receive(r.partition, r.key, r.value)
        except FeedRefusal as exc:
            refused.append(exc.reason)  # MM2 delivers at least once: a repeat is refused, not applied
            continue
        if outcome.revision is not None:
            later.append(outcome.revision.revision)
    assert later == [2] and set(refused) == {"replayed"} and len(refused) >= len(arrived)
    assert spoke.state_hash() == writer.state_hash() and len(spoke.samples) == 10
    # MirrorMaker 2 only read on the hub: it made no topic of its own there.
    made = asyncio.run(hub_topics(link.hub)) - KAFKA_INTERNAL_TOPICS
    assert made <= {t.name for t in all_topics(PARTITIONS)} | {t.name for t in spoke_feeds(PARTITIONS)}


def test_an_aborted_write_of_the_hub_never_reaches_the_spoke(link: Link) -> None:
    """A publisher killed inside a transaction leaves its entries aborted on the hub, and its
    successor numbers its own entries as if they never were: MirrorMaker 2 reads committed
    records only, so a spoke never meets an aborted entry beside the one that replaced it."""
    run = uuid.uuid4().hex.encode()
    aborted, committed = b"aborted " + run, b"committed " + run

    async def write() -> None:
        async with transactional_producer(link.hub, PUBLISHER_TRANSACTIONAL_ID) as producer:
            await producer.begin_transaction()
            await producer.send_and_wait(TOPIC, aborted, key=b"probe", partition=0)
            await producer.abort_transaction()
            async with producer.transaction():
                await producer.send_and_wait(TOPIC, committed, key=b"probe", partition=0)

    asyncio.run(write())

    def mirrored() -> set[bytes] | None:
        values = {r.value for r in asyncio.run(read_records(link.spoke, [TOPIC], timeout=10))}
        return values if committed in values else None

    values = wait_for(mirrored, timeout=90, what="MirrorMaker 2 to copy the committed write")
    assert aborted not in values
