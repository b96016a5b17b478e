"""The topic registry names everything on the broker: after all the hub's services ran, the
broker holds the registered topics and Kafka's own, and no topic a service made itself
(the consumer library the services once ran made ``genomhub-<service>-__assignor-__leader``)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from shared.config import TopicSettings
from shared.topics import FEED_WRITER, KAFKA_INTERNAL_TOPICS, SUBSCRIPTIONS, all_topics, consumer_group
from tests.support import Process, free_port, genomhub, kafka, wait_for


async def _broker_topics(bootstrap: str) -> set[str]:
    admin = kafka(bootstrap=bootstrap).admin()
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def _members(bootstrap: str, group: str) -> int:
    admin = kafka(bootstrap=bootstrap).admin()
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    # (error code, group, state, protocol type, protocol, members, ...)
    return sum(len(g[5]) for g in response.groups if g[1] == group and g[2] == "Stable")


def test_nothing_is_on_the_broker_that_the_registry_does_not_name(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    processes: list[Process] = []
    try:
        for service in SUBSCRIPTIONS:
            port = free_port()
            env = {
                f"GENOMHUB_{service.upper()}_PORT": str(port),
                "GENOMHUB_BILLING_DATABASE_URL": f"sqlite:///{tmp_path / 'billing.sqlite'}",
            }
            proc = Process(genomhub("run", service), tmp_path / f"{service}.log", env).start()
            processes.append(proc)
            proc.wait_http(port, "/healthz", timeout=90)
        # A consuming service has joined its group: past the point where a consumer library
        # would declare topics of its own (the publisher reads in no group).
        for group in [
            consumer_group(s) for s, models in SUBSCRIPTIONS.items() if models and s != FEED_WRITER
        ]:
            wait_for(
                lambda group=group: asyncio.run(_members(kafka_bootstrap, group)) > 0,
                timeout=90,
                what=f"{group} to be joined",
            )
        # Every service is still running, the receiver too, which consumes nothing.
        time.sleep(5)
        assert [
            s
            for s, p in zip(SUBSCRIPTIONS, processes, strict=True)
            if p.proc is None or p.proc.poll() is not None
        ] == []
        registered = {t.name for t in all_topics(TopicSettings().partitions)}
        found = asyncio.run(_broker_topics(kafka_bootstrap))
    finally:
        for proc in processes:
            proc.stop()
    assert found - KAFKA_INTERNAL_TOPICS - registered == set(), "topics the registry does not name"
    assert registered <= found, "registered topics the admin did not create"
