"""Consumer-group offsets set and read as the admin, to prepare and check what the
operators' tools do."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from aiokafka import TopicPartition

from shared.bus import partitions_of
from tests.support import kafka

Offsets = dict[tuple[str, int], int]


async def _commit(bootstrap: str, group: str, offsets: Mapping[tuple[str, int], int]) -> None:
    consumer = kafka(bootstrap=bootstrap).consumer(group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        wanted = {TopicPartition(t, p): o for (t, p), o in offsets.items()}
        consumer.assign(list(wanted))
        await consumer.commit(wanted)
    finally:
        await consumer.stop()


async def _committed(bootstrap: str, group: str) -> Offsets:
    admin = kafka(bootstrap=bootstrap).admin()
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {(tp.topic, tp.partition): meta.offset for tp, meta in found.items() if meta.offset >= 0}


async def _bounds(bootstrap: str, topics: Sequence[str]) -> tuple[Offsets, Offsets]:
    parts = [tp for t in topics for tp in await partitions_of(kafka(bootstrap=bootstrap), t)]
    consumer = kafka(bootstrap=bootstrap).consumer(enable_auto_commit=False)
    await consumer.start()
    try:
        starts = await consumer.beginning_offsets(parts)
        ends = await consumer.end_offsets(parts)
    finally:
        await consumer.stop()
    return (
        {(tp.topic, tp.partition): o for tp, o in starts.items()},
        {(tp.topic, tp.partition): o for tp, o in ends.items()},
    )


def commit(bootstrap: str, group: str, offsets: Mapping[tuple[str, int], int]) -> None:
    """Commit offsets for ``group`` as a consumer outside the group would."""
    asyncio.run(_commit(bootstrap, group, offsets))


def committed(bootstrap: str, group: str) -> Offsets:
    return asyncio.run(_committed(bootstrap, group))


def bounds(bootstrap: str, topics: Sequence[str]) -> tuple[Offsets, Offsets]:
    """Log start and end offset of each partition of ``topics``."""
    return asyncio.run(_bounds(bootstrap, topics))
