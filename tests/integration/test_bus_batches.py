"""The bus's batch handler against the real broker: a poll batch with a poison event in the
middle accrues the good ones and dead-letters the bad one; a crash after the batch's effect
and before its commit delivers the batch again without accruing anything twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiokafka.partitioner import DefaultPartitioner

from services.billing.store import BillingStore
from shared import telemetry
from shared.bus import end_offsets, partitions_of
from shared.config import TopicSettings
from shared.envelope import encode, normalise_headers
from shared.events import Indexed, SampleStatus
from shared.topics import ADMIN, consumer_group, dlq_name, topic_name
from tests.support import Process, free_port, kafka, python, records, wait_for
from tests.unit.billing.billing_factories import indexed

TOPIC = topic_name(Indexed)


def probe(tmp_path: Path, name: str) -> tuple[Process, Path, int]:
    database = tmp_path / f"{name}.sqlite"
    port = free_port()
    proc = Process(
        python("tests/integration/probe_batch_service.py", name, str(database), str(port)),
        tmp_path / f"{name}.log",
    )
    return proc, database, port


def attempts(database: Path, ids: set[str]) -> dict[tuple[int, int], list[str]]:
    """The probe's attempts at batches that held any of ``ids``, in order: (process, batch
    number) to event ids."""
    found: dict[tuple[int, int], list[str]] = {}
    path = database.with_suffix(".attempts")
    for line in path.read_text().splitlines() if path.exists() else []:
        pid, number, event_id = line.split()
        if event_id in ids:
            found.setdefault((int(pid), int(number)), []).append(event_id)
    return found


def trace_ids(database: Path, prefix: str) -> dict[str, str]:
    """The trace id of each accrual's kept traceparent, by sample."""
    store = BillingStore(f"sqlite:///{database}")
    try:
        return {
            b.accrual.sample_id: str(b.accrual.trace_parent).split("-")[1]
            for b in store.billed()
            if b.accrual.sample_id.startswith(prefix)
        }
    finally:
        store.dispose()


def accrued(database: Path, prefix: str) -> dict[str, int]:
    store = BillingStore(f"sqlite:///{database}")
    try:
        return {
            b.accrual.sample_id: b.accrual.ge_micro
            for b in store.billed()
            if b.accrual.sample_id.startswith(prefix)
        }
    finally:
        store.dispose()


def samples(prefix: str, count: int) -> list[tuple[Indexed, str]]:
    """Indexed events of samples whose keys the producer puts on one partition, so that they
    arrive in one poll batch."""
    partitions = list(range(TopicSettings().partitions))
    chosen: list[Indexed] = []
    n = 0
    while len(chosen) < count:
        event = indexed(f"{prefix}{n}", ge=f"1.{n}")
        if DefaultPartitioner()(event.key().encode(), partitions, partitions) == 0:
            chosen.append(event)
        n += 1
    return [(event, f"{event.submission.sample_id}-e") for event in chosen]


async def start_group_at_end(bootstrap: str, group: str) -> None:
    """Commit the probe's group at the topic's current end, as ``genomhub replay --to-offset``
    would: the probe then reads only what the test publishes after, not the other tests'."""
    access = kafka(ADMIN, bootstrap)
    partitions = await partitions_of(access, TOPIC)
    ends = await end_offsets(access, partitions)
    consumer = access.consumer(group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.commit(ends)
    finally:
        await consumer.stop()


async def publish_together(bootstrap: str, events: list[tuple[Indexed, str]]) -> dict[str, str]:
    """Publish ``events`` in one record batch, as the indexer's batch of emits does, so that a
    consumer fetches them together, each in a trace of its own; returns each sample's trace id."""
    traces: dict[str, str] = {}
    producer = kafka("indexer", bootstrap).producer(linger_ms=500, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        sent = []
        tracer = telemetry.tracer("test")
        for event, event_id in events:
            headers, value = encode(event, event_id=event_id, source="/genomhub/indexer")
            with tracer.start_as_current_span(f"upload {event_id}"):  # each its own trace
                telemetry.inject(headers)
                traces[event.submission.sample_id] = str(telemetry.current_trace_id())
            sent.append(await producer.send(TOPIC, value, key=event.key().encode(), headers=headers))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return traces


def test_a_poison_event_in_a_batch_is_dead_lettered_and_the_good_ones_accrue(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    telemetry.setup("test")
    events = samples("BP", 5)
    poison, poison_id = events[2]
    # Accepted and rejected at once: billing refuses it (accrual_of), after it decoded.
    events[2] = (poison.model_copy(update={"status": SampleStatus.REJECTED}), poison_id)
    proc, database, port = probe(tmp_path, "probe-batch-poison")
    asyncio.run(start_group_at_end(kafka_bootstrap, consumer_group("probe-batch-poison")))
    traces = asyncio.run(publish_together(kafka_bootstrap, events))
    ids = {event_id for _, event_id in events}
    proc.start()
    try:
        proc.wait_http(port)
        dead = wait_for(
            lambda: [
                r
                for r in records(kafka_bootstrap, dlq_name(TOPIC))
                if dict(normalise_headers(r.headers)).get("ce_id") == poison_id.encode()
            ],
            what="the poison event's dead letter",
        )
        wait_for(lambda: len(accrued(database, "BP")) == 4, what="the four good accruals")
    finally:
        proc.stop()
    good = [event for event, event_id in events if event_id != poison_id]
    assert accrued(database, "BP") == {
        e.submission.sample_id: int(e.genome_equivalents * 1_000_000) for e in good
    }
    tried = attempts(database, ids)
    first = next(iter(tried))
    assert sorted(tried[first]) == sorted(ids), "the five events came in one batch"
    # Then each alone: the good ones accrue, only the poison fails and is dead-lettered.
    assert sorted(i for n, batch in tried.items() if n != first for i in batch) == sorted(ids)
    # Applied together, each accrual still keeps its own record's trace, not a neighbour's.
    assert trace_ids(database, "BP") == {e.submission.sample_id: traces[e.submission.sample_id] for e in good}
    (letter,) = dead
    headers = dict(normalise_headers(letter.headers))
    assert headers["genomhub_dlq_code"] == b"handler_failed"
    assert b"contradicts" in headers["genomhub_dlq_error"]


def test_a_crash_before_the_commit_delivers_the_batch_again_without_doubling(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    events = samples("BC", 4)
    ids = {event_id for _, event_id in events}
    proc, database, _ = probe(tmp_path, "probe-batch-crash")
    database.with_suffix(".crash").write_text("BC")
    asyncio.run(start_group_at_end(kafka_bootstrap, consumer_group("probe-batch-crash")))
    asyncio.run(publish_together(kafka_bootstrap, events))
    proc.start()
    assert proc.wait_exit(90) == 17, proc.tail()
    once = accrued(database, "BC")
    assert len(once) == 4  # durable before the crash, but its offsets never committed

    again, _, again_port = probe(tmp_path, "probe-batch-crash")
    again.start()
    try:
        again.wait_http(again_port)
        wait_for(
            lambda: sum(len(b) for b in attempts(database, ids).values()) >= 8,
            what="the batch delivered again",
        )
    finally:
        again.stop()
    assert accrued(database, "BC") == once
    delivered = [sorted(batch) for batch in attempts(database, ids).values()]
    assert delivered == [sorted(ids), sorted(ids)], "the whole batch, once before the crash and once after"
