"""The service process's own rules, without a broker: when it stops, what its timers do, and
which handled offsets it commits."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError
from pydantic import SecretStr

from shared.bus import Service, _Handled, until_stopped_or_failed
from shared.config import SERVICE_SETTINGS, KafkaSettings, ServiceSettings
from shared.events import Harmonised, Validated


def offline(service: str) -> ServiceSettings:
    """The service's settings with a broker it never reaches (building a service contacts none)."""
    kafka = KafkaSettings(bootstrap="127.0.0.1:9", username="unused", password=SecretStr("unused"))
    return SERVICE_SETTINGS[service](kafka=kafka)


P0, P1 = TopicPartition("genomhub.validated.v1", 0), TopicPartition("genomhub.validated.v1", 1)


async def _finish() -> None:
    return None


async def _fail() -> None:
    raise RuntimeError("the job store is gone")


async def _forever() -> None:
    await asyncio.Event().wait()


async def outcome(*works: Any, stop_after: float | None = None) -> bool:
    stopping = asyncio.Event()
    tasks = [asyncio.create_task(w()) for w in works]
    if stop_after is not None:
        asyncio.get_running_loop().call_later(stop_after, stopping.set)
    try:
        return await asyncio.wait_for(until_stopped_or_failed(stopping, tasks), timeout=5)
    finally:
        for task in tasks:
            task.cancel()


def test_work_that_is_done_keeps_the_process_running_until_it_is_told_to_stop() -> None:
    assert asyncio.run(outcome(_finish, _forever, stop_after=0.2)) is False


def test_work_that_fails_stops_the_process_as_failed() -> None:
    assert asyncio.run(outcome(_finish, _forever, _fail)) is True


def test_a_timer_runs_its_work_every_interval_after_the_first() -> None:
    service = Service("billing", offline("billing"))
    ticks: list[float] = []
    three = asyncio.Event()

    @service.timer(0.05)
    async def tick() -> None:
        ticks.append(asyncio.get_running_loop().time())
        if len(ticks) == 3:
            three.set()

    async def run_until_three_ticks() -> float:
        (every,) = service._background
        started = asyncio.get_running_loop().time()
        task = asyncio.create_task(every())
        await asyncio.wait_for(three.wait(), timeout=10)
        task.cancel()
        return started

    started = asyncio.run(run_until_three_ticks())
    gaps = [b - a for a, b in zip([started, *ticks], ticks, strict=False)]
    assert all(gap >= 0.049 for gap in gaps), gaps  # asyncio may wake within its clock resolution


def test_a_service_may_handle_an_event_type_once_and_only_what_it_subscribes() -> None:
    service = Service("indexer", offline("indexer"))

    async def handle(_: Any) -> None:
        return None

    service.on(Validated, handle)
    with pytest.raises(ValueError, match="already has a handler for validated"):
        service.on(Validated, handle)
    with pytest.raises(ValueError, match="billing is not registered to consume harmonised"):
        Service("billing", offline("billing")).on(Harmonised, handle)


class Consumer:
    """What :class:`_Handled` asks of a consumer: its partitions, and a commit."""

    def __init__(self, owned: set[TopicPartition], refuse: bool = False) -> None:
        self.owned = owned
        self.refuse = refuse
        self.committed: list[dict[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return self.owned

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.refuse:
            raise CommitFailedError("the group rebalanced")
        self.committed.append(offsets)


def test_only_handled_offsets_of_partitions_still_owned_are_committed() -> None:
    consumer = Consumer({P0})
    handled = _Handled(consumer)
    handled.mark(P0, 5)
    handled.mark(P0, 6)
    handled.mark(P1, 9)  # handled while the partition was taken away: its next owner redelivers
    asyncio.run(handled.commit())
    asyncio.run(handled.commit())  # nothing new: nothing sent
    assert consumer.committed == [{P0: 6}]


def test_a_commit_the_group_refuses_is_dropped_not_raised() -> None:
    consumer = Consumer({P0}, refuse=True)
    handled = _Handled(consumer)
    handled.mark(P0, 3)
    asyncio.run(handled.commit())
    assert handled.pending == {}
