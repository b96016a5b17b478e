"""MirrorMaker 2 carries a spoke's signed feed from the hub's broker to the spoke's, under
the same topic name and partition, and the spoke verifies what arrives: a real second KRaft
broker on loopback and Kafka's own MirrorMaker 2, started once for the module."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.publisher.writer import FeedWriter, Record
from services.spoke.verifier import FeedVerifier
from shared.bus import ensure_topics, read_records
from shared.config import StateSettings, TopicSettings
from shared.events import AnalysisType, Region, SampleStatus, Verdict
from shared.feed import FeedRefusal, SampleSummary
from shared.kafka import KafkaAccess
from shared.topics import ADMIN, KAFKA_INTERNAL_TOPICS, Topic, all_topics, feed_topic, spoke_feeds
from tests.support import kafka, wait_for
from tools.kafka.broker import LocalBroker
from tools.kafka.mirror import LocalMirror

SPOKE = Region.SYDDANMARK
PARTITIONS = 3
TOPIC = feed_topic(SPOKE)


@dataclass(frozen=True)
class Link:
    hub: KafkaAccess
    spoke: KafkaAccess
    mirror: LocalMirror


@pytest.fixture(scope="module")
def link(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Link]:
    """The session's broker as the hub, a second broker as Syddanmark's spoke, MM2 between.

    The hub's feeds are made empty first (a publisher of the session may have written them)
    so that this test's own writer is the only one, and are left empty again, as registered."""
    home = tmp_path_factory.mktemp("spoke-syddanmark")
    hub = kafka(ADMIN)
    asyncio.run(recreate(hub, spoke_feeds(PARTITIONS)))
    broker = LocalBroker(home, StateSettings().cache, PARTITIONS)
    mirror = LocalMirror(home, StateSettings().cache)
    try:
        state, _ = broker.start()
        spoke = broker.access(ADMIN, state)
        mirror.start(hub, spoke)
        yield Link(hub, spoke, mirror)
    finally:
        mirror.stop()
        broker.stop()
        asyncio.run(recreate(hub, spoke_feeds(TopicSettings().partitions)))


async def recreate(access: KafkaAccess, topics: list[Topic], timeout: float = 60.0) -> None:
    """``topics`` deleted and made again, empty: each step waited for, since the broker deletes
    a topic in the background and refuses to make one of the same name until it is gone."""
    names = {t.name for t in topics}
    deadline = time.monotonic() + timeout
    admin = access.admin()
    await admin.start()
    try:
        if present := sorted(names & set(await admin.list_topics())):
            await admin.delete_topics(present)
        while names & set(await admin.list_topics()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the broker did not delete {sorted(names)} in {timeout:.0f} s")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    while not names <= await hub_topics(access):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the broker did not make {sorted(names)} again in {timeout:.0f} s")
        with contextlib.suppress(KafkaError):  # still being deleted: the next try makes it
            await ensure_topics(access, 1, 1, topics)
        await asyncio.sleep(0.2)


async def hub_topics(access: KafkaAccess) -> set[str]:
    admin = access.admin()
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def produce(access: KafkaAccess, topic: str, records: list[Record]) -> list[int]:
    producer = access.producer(acks="all", enable_idempotence=True)
    await producer.start()
    try:
        sent = [
            await producer.send_and_wait(topic, r.value, key=r.key, partition=r.partition) for r in records
        ]
        return [m.offset for m in sent]
    finally:
        await producer.stop()


async def cleanup_policy(access: KafkaAccess, topic: str) -> str:
    admin = access.admin()
    await admin.start()
    try:
        (described,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        entries = described.resources[0][4]
        return next(str(e[1]) for e in entries if e[0] == "cleanup.policy")
    finally:
        await admin.close()


def summaries(names: list[str], now: datetime) -> list[SampleSummary]:
    return [
        SampleSummary(
            region=Region.HOVEDSTADEN,
            sample_id=name,
            analysis_type=AnalysisType.WGS,
            qc=Verdict.ACCEPTED,
            status=SampleStatus.HARMONISED,
            genome_equivalents=Decimal("1"),
            files=2,
            received_month=now.strftime("%Y-%m"),
        )
        for name in names
    ]


def publish(link: Link, writer: FeedWriter, names: list[str]) -> int:
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
    held = publish(link, writer, [f"M{i}" for i in range(6)])
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
    held = publish(link, writer, [f"M{i}" for i in range(6, 10)] + ["M0"])
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
