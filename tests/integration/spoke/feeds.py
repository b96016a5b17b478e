"""What the spoke tests stand on: the session's broker as the hub, a second KRaft broker as a
spoke, Kafka's own MirrorMaker 2 between (``link``, in this folder's conftest), and the
feeds' helpers."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from aiokafka.errors import KafkaError

from services.publisher.writer import Record
from shared.bus import ensure_topics
from shared.config import StateSettings, TopicSettings
from shared.events import AnalysisType, Region, SampleStatus, Verdict
from shared.feed import SampleSummary
from shared.kafka import KafkaAccess
from shared.topics import ADMIN, Topic, feed_topic, spoke_feeds
from tests.support import kafka
from tools.kafka.broker import LocalBroker
from tools.kafka.mirror import LocalMirror

PARTITIONS = 3


@dataclass(frozen=True)
class Link:
    hub: KafkaAccess
    spoke: KafkaAccess
    mirror: LocalMirror
    home: Path
    """The spoke broker's state folder: where its principals' credentials are."""


@contextlib.contextmanager
def linked(home: Path, region: Region) -> Iterator[Link]:
    """The session's broker as the hub, a second broker under ``home`` as ``region``'s spoke,
    MM2 between carrying that region's feed alone.

    The hub's feeds are made empty first (another module's writer may have written them) so
    that a module's own writers are the only ones, and are left empty again, as registered."""
    hub = kafka(ADMIN)
    asyncio.run(recreate(hub, spoke_feeds(PARTITIONS)))
    broker = LocalBroker(home, StateSettings().cache, PARTITIONS)
    mirror = LocalMirror(home, StateSettings().cache)
    try:
        state, _ = broker.start()
        spoke = broker.access(ADMIN, state)
        mirror.start(hub, spoke, re.escape(feed_topic(region)))
        yield Link(hub, spoke, mirror, home)
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
