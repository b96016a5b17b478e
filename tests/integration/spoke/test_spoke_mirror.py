"""MirrorMaker 2 carries a spoke's signed feed from the hub's broker to the spoke's, under
the same topic name and partition, and the spoke verifies what arrives: a real second KRaft
broker on loopback and Kafka's own MirrorMaker 2, started once for the module."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.publisher.writer import FeedWriter, Record
from services.spoke.verifier import FeedVerifier
from shared.bus import ensure_topics, read_records
from shared.config import StateSettings
from shared.events import AnalysisType, Region, SampleStatus, Verdict
from shared.feed import SampleSummary
from shared.kafka import KafkaAccess
from shared.topics import ADMIN, feed_topic, spoke_feeds
from tests.support import kafka, wait_for
from tools.kafka.broker import LocalBroker
from tools.kafka.mirror import LocalMirror

SPOKE = Region.SYDDANMARK
PARTITIONS = 3


@dataclass(frozen=True)
class Link:
    hub: KafkaAccess
    spoke: KafkaAccess
    mirror: LocalMirror


@pytest.fixture(scope="module")
def link(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Link]:
    """The session's broker as the hub, a second broker as Syddanmark's spoke, MM2 between."""
    home = tmp_path_factory.mktemp("spoke-syddanmark")
    hub = kafka(ADMIN)
    asyncio.run(ensure_topics(hub, PARTITIONS, 1, spoke_feeds(PARTITIONS)))
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


def test_a_signed_entry_on_the_hub_arrives_verified_on_the_spoke(link: Link, tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    writer = FeedWriter(SPOKE, key, PARTITIONS)
    now = datetime.now(UTC)
    bodies = [
        SampleSummary(
            region=Region.HOVEDSTADEN,
            sample_id=f"M{i}",
            analysis_type=AnalysisType.WGS,
            qc=Verdict.ACCEPTED,
            status=SampleStatus.HARMONISED,
            genome_equivalents=Decimal("1"),
            files=2,
            received_month=now.strftime("%Y-%m"),
        )
        for i in range(6)
    ]
    entries = [r for b in bodies if (r := writer.publish(b, now)) is not None]
    topic = feed_topic(SPOKE)
    for record, offset in zip(entries, asyncio.run(produce(link.hub, topic, entries)), strict=True):
        writer.delivered(record.partition, offset)
    asyncio.run(produce(link.hub, topic, [writer.checkpoint(now)]))

    def mirrored() -> list[object]:
        try:
            found = asyncio.run(read_records(link.spoke, [topic], timeout=5))
        except Exception:  # the topic is not on the spoke yet
            return []
        return found if len(found) == len(entries) + 1 else []

    arrived = wait_for(mirrored, timeout=90, what=f"MirrorMaker 2 to copy {topic} to the spoke")
    spoke = FeedVerifier(SPOKE, key.public_key())
    revisions = [spoke.receive(r.partition, r.key, r.value).revision for r in arrived]
    assert [r.revision for r in revisions if r is not None] == [1]
    assert spoke.state_hash() == writer.state_hash()
    assert {r.partition for r in arrived} == {r.partition for r in entries}
    assert asyncio.run(cleanup_policy(link.spoke, topic)) == "compact"
    assert link.mirror.running()
