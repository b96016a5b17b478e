"""The event bus: how a service consumes, emits and dead-letters CloudEvents on Kafka.

A :class:`Service` is one process: a faust app whose agents hand decoded events to plain
async handlers, an HTTP server for probes and the service's API, and one way to emit.

Delivery is at-least-once. Faust acknowledges a record only when the handler returned, and
a handler returns only after its effect and any event it emitted are durable (emits wait
for the broker's acknowledgement), so an offset is never committed ahead of its effect. A
record that cannot be decoded, or whose handler raises, is copied with its original headers
and the reason to the topic's dead-letter topic, and the consumer goes on with the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import faust
from aiokafka import TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from opentelemetry.trace import SpanKind, Status, StatusCode

from shared import telemetry
from shared.config import Settings, get_settings
from shared.envelope import (
    Envelope,
    Headers,
    RefusedEvent,
    UndecodableEvent,
    decode,
    derive_id,
    encode,
    normalise_headers,
)
from shared.events import Event
from shared.http import (
    CONSUMER_LAG,
    DLQ_SENDS,
    EVENTS_FAILED,
    EVENTS_PROCESSED,
    LATENCY,
    HttpServer,
    ReadinessCheck,
    make_web,
    tls_context,
)
from shared.identifiers import minted_free_of_cpr
from shared.kafka import KafkaAccess, kafka_access
from shared.topics import EMITS, SUBSCRIPTIONS, all_topics, consumer_group, dlq_name, topic_name

E = TypeVar("E", bound=Event)
Handler = Callable[[Envelope[E]], Awaitable[None]]

DLQ_HEADER_PREFIX = "genomhub_dlq_"
DEAD_LETTER_RETRIES = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
EXIT_UNDELIVERABLE = 75  # EX_TEMPFAIL: restart me
TOPICS_WAIT_S = 120.0
log = telemetry.get_logger(__name__)


async def ensure_topics(admin_access: KafkaAccess, partitions: int, replicas: int) -> list[str]:
    """Create every registered topic that does not exist yet; returns those it created.

    An admin's step at stack start (the local broker runs it; in Kubernetes the Topic
    Operator creates them from KafkaTopic resources): services may not create topics.
    """
    admin = admin_access.admin()
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(t.name, t.partitions, replicas, topic_configs=t.config)
            for t in all_topics(partitions)
            if t.name not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):  # another admin was first
                await admin.create_topics(wanted)
        return [t.name for t in wanted]
    finally:
        await admin.close()


def _record(event: Event, event_id: str, source: str) -> tuple[bytes, bytes, Headers]:
    """Key, value and headers of the record for ``event``, with the current trace context."""
    headers, value = encode(event, event_id=event_id, source=source)
    telemetry.inject(headers)
    return event.key().encode(), value, headers


def dead_letter_headers(
    message_headers: Headers, *, service: str, error: str, code: str, topic: str, partition: int, offset: int
) -> Headers:
    extra = {
        "service": service,
        "error": error[:4000],
        "code": code,
        "topic": topic,
        "partition": str(partition),
        "offset": str(offset),
        "time": datetime.now(UTC).isoformat(),
    }
    kept = [(k, v) for k, v in message_headers if not k.startswith(DLQ_HEADER_PREFIX)]
    return kept + [(DLQ_HEADER_PREFIX + k, v.encode()) for k, v in extra.items()]


class Service:
    """One genomhub service process; ``app.py`` of each service builds one and wires it."""

    def __init__(
        self,
        name: str,
        settings: Settings | None = None,
        http_port: int | None = None,
        principal: str | None = None,
    ) -> None:
        """``principal`` is whose credentials the process uses: the service's own (its name)
        unless a test's probe, which is no registered service, says otherwise."""
        self.name = name
        self.settings = settings or get_settings()
        self.http_port = http_port if http_port is not None else self.settings.port_of(name)
        self.source = f"/genomhub/{name}"
        telemetry.setup(name, self.settings.log_level)
        self.tracer = telemetry.tracer(f"genomhub.{name}")
        datadir = self.settings.state_dir / "faust" / name
        datadir.parent.mkdir(parents=True, exist_ok=True)
        self.readiness: list[ReadinessCheck] = [self._broker_reachable]
        self.web = make_web(self.readiness, self._record_lag)
        self.access = kafka_access(principal or name, self.settings)
        self.app = self.access.faust_app(
            consumer_group(name),
            key_serializer="raw",
            value_serializer="raw",
            web_enabled=False,
            store="memory://",
            datadir=str(datadir),
            consumer_auto_offset_reset="earliest",
            broker_commit_interval=1.0,
            # A killed member holds its partitions until its session expires; keep that short
            # so a restarted service resumes within seconds, not a minute.
            broker_session_timeout=10.0,
            broker_heartbeat_interval=2.0,
            producer_acks=-1,
            topic_partitions=self.settings.topic_partitions,
            topic_replication_factor=self.settings.topic_replicas,
            # The registry names every topic on the broker and the admin creates them all.
            # faust would declare topics of its own: the leader-election topic
            # `<app id>-__assignor-__leader` (used only by `on_leader` timers and agents,
            # which no service has; billing's timer is safe on every replica, since the
            # store serialises closes) and changelogs of tables (none). Neither is made.
            topic_disable_leader=True,
            topic_allow_declare=False,
        )

    # -- consuming -------------------------------------------------------------------
    def on(self, model: type[E], handler: Handler[E]) -> None:
        """Run ``handler`` for each event on ``model``'s topic; failures go to its DLQ."""
        if self.name in SUBSCRIPTIONS and model not in SUBSCRIPTIONS[self.name]:
            raise ValueError(
                f"{self.name} is not registered to consume {model.event_name} (shared/topics.py)"
            )
        topic = self.app.topic(topic_name(model))

        async def agent(stream: faust.StreamT[Any]) -> None:
            # Manual acks: faust would ack a record even when the loop body raised or was
            # cancelled, and the next commit would skip it. Only a record that was handled or
            # dead-lettered is acknowledged; any other is delivered again after a restart.
            assert isinstance(stream, faust.Stream)
            async for event in stream.noack().events():
                await self.deliver(model, handler, event.message)
                event.ack()

        self.app.agent(topic, name=f"{self.name}.{model.event_name}")(agent)

    async def deliver(self, model: type[E], handler: Handler[E], message: Any) -> None:
        headers = normalise_headers(message.headers)
        started = time.perf_counter()
        with self.tracer.start_as_current_span(
            f"{self.name} {model.event_name}",
            context=telemetry.extract(headers),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.destination.name": message.topic,
                "messaging.kafka.offset": message.offset,
            },
        ) as span:
            try:
                envelope = decode(headers, message.value, model, message.key)
            except UndecodableEvent as exc:
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                await self.dead_letter(message, headers, exc.code, str(exc))
                return
            except Exception as exc:  # decode says what is wrong; if it ever fails otherwise,
                # the record is still dead-lettered rather than stop the consumer on it
                log.exception("decoding failed", topic=message.topic, offset=message.offset)
                await self.dead_letter(message, headers, "undecodable", type(exc).__name__)
                return
            span.set_attribute("genomhub.submission_id", envelope.subject)
            span.set_attribute("cloudevents.event_id", envelope.id)
            bound = telemetry.bind(submission_id=envelope.subject, event_id=envelope.id)
            try:
                await handler(envelope)
            except RefusedEvent as exc:  # the handler refused it before changing anything
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                EVENTS_FAILED.labels(self.name, model.event_name).inc()
                await self.dead_letter(message, headers, exc.code, str(exc))
                return
            except Exception as exc:  # any failure dead-letters the record; the loop goes on
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                log.exception("handler failed", topic=message.topic, offset=message.offset)
                EVENTS_FAILED.labels(self.name, model.event_name).inc()
                await self.dead_letter(message, headers, "handler_failed", f"{type(exc).__name__}: {exc}")
                return
            finally:
                telemetry.unbind(bound)
            EVENTS_PROCESSED.labels(self.name, model.event_name).inc()
            LATENCY.labels(self.name, model.event_name).observe(time.perf_counter() - started)

    async def dead_letter(self, message: Any, headers: Headers, code: str, error: str) -> None:
        """Copy the record to its DLQ; if even that keeps failing, stop the process.

        A record must end handled or dead-lettered. When the broker cannot take the dead
        letter (it is down), the process exits without acknowledging the record, so the
        record is delivered again once the service is restarted and the broker is back.
        """
        dlq = dlq_name(message.topic)
        log.warning("dead-lettered", topic=message.topic, offset=message.offset, code=code, error=error)
        letter = dead_letter_headers(
            headers,
            service=self.name,
            error=error,
            code=code,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
        )
        for pause in DEAD_LETTER_RETRIES:
            try:
                await self.app.producer.send_and_wait(dlq, message.key, message.value, None, None, letter)
                DLQ_SENDS.labels(self.name, dlq).inc()
                return
            except Exception as exc:  # the broker is unreachable: wait, then try again
                log.warning("dead letter not sent", topic=dlq, error=str(exc), retry_in=pause)
                await asyncio.sleep(pause)
        log.critical("dead letter could not be sent; exiting so the record is delivered again", topic=dlq)
        telemetry.flush()
        os._exit(EXIT_UNDELIVERABLE)

    # -- emitting --------------------------------------------------------------------
    async def emit(
        self, event: Event, *, cause: Envelope[Any] | None = None, event_id: str | None = None
    ) -> str:
        """Send ``event`` and wait until the broker has it; returns its id.

        Its id is derived from ``cause`` (the event being handled), so a replay emits the
        same id again; an event that starts a chain (an upload) passes its own ``event_id``.
        A service emits only what the registry says it emits: the broker refuses the rest.
        """
        if type(event) not in EMITS.get(self.name, ()):
            raise ValueError(f"{self.name} is not registered to emit {event.event_name} (shared/topics.py)")
        if event_id is None:
            if cause is None:
                raise ValueError("an event needs a cause or an explicit id")
            event_id = derive_id(cause.id, self.name, event.ce_type())
        with self.tracer.start_as_current_span(
            f"{self.name} emit {event.event_name}", kind=SpanKind.PRODUCER
        ):
            key, value, headers = _record(event, event_id, self.source)
            await self.app.producer.send_and_wait(topic_name(type(event)), key, value, None, None, headers)
        return event_id

    # -- running ---------------------------------------------------------------------
    async def _record_lag(self) -> None:
        lag = await group_lag(self.access, self.app.conf.id)
        for tp, (committed, end) in lag.items():
            CONSUMER_LAG.labels(self.name, tp.topic, str(tp.partition)).set(max(end - committed, 0))

    async def _broker_reachable(self) -> None:
        admin = self.access.admin(request_timeout_ms=3000)
        try:
            await admin.start()
        finally:
            await admin.close()

    def topics(self) -> list[str]:
        """The topics this service reads or writes: its subscriptions, their dead-letter
        topics and what it emits."""
        consumed = [topic_name(m) for m in SUBSCRIPTIONS.get(self.name, ())]
        return sorted(
            {*consumed, *map(dlq_name, consumed), *(topic_name(m) for m in EMITS.get(self.name, ()))}
        )

    def run(self, extra_services: Sequence[Any] = ()) -> None:
        """Wait for the topics, then run the consumer and the HTTP server until stopped."""
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        loop.run_until_complete(wait_for_topics(self.access, self.topics(), TOPICS_WAIT_S))
        http = HttpServer(
            self.web,
            self.settings.http_host,
            self.http_port,
            tls=tls_context(self.settings.http_tls_cert, self.settings.http_tls_key),
            head_timeout=self.settings.http_head_timeout,
        )
        # A service that consumes nothing (the receiver) runs faust's producer and its tasks
        # alone: with no topic to subscribe to (and no leader topic of faust's own), faust's
        # consumer would crash the worker.
        self.app.producer_only = not self.app.agents
        worker = faust.Worker(self.app, http, *extra_services, loop=loop, loglevel="WARNING", quiet=True)
        worker.execute_from_commandline()


async def wait_for_topics(access: KafkaAccess, topics: Sequence[str], timeout: float) -> None:
    """Return once every one of ``topics`` exists; the admin creates them, not a service.

    On a fresh local stack they exist before any service starts; in Kubernetes the Topic
    Operator may still be creating them. A topic still missing after ``timeout`` is an error
    (the process exits and its supervisor starts it again).
    """
    deadline = time.monotonic() + timeout
    missing = list(topics)
    while True:
        admin = access.admin()
        try:
            await admin.start()
            missing = sorted(set(topics) - set(await admin.list_topics()))
        except Exception as exc:  # the broker is not reachable yet: wait and ask again
            log.warning("waiting for the broker", error=str(exc))
        finally:
            await admin.close()
        if not missing:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"topics {', '.join(missing)} do not exist after {timeout:.0f} s: the admin creates them "
                "at stack start (`genomhub kafka start`; in Kubernetes the Topic Operator)"
            )
        log.info("waiting for topics", missing=missing)
        await asyncio.sleep(1.0)


async def publish(
    events: Sequence[tuple[Event, str]], source: str, settings: Settings | None = None, *, principal: str
) -> None:
    """Emit events from a command rather than a running service (e.g. a month close).

    Each item is an event with its id. Uses a plain aiokafka producer with ``principal``'s
    credentials (``finance`` for a month close) and the same envelope and trace injection
    as :meth:`Service.emit`; the broker refuses a topic the principal may not write.
    """
    settings = settings or get_settings()
    producer = kafka_access(principal, settings).producer(acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for event, event_id in events:
            key, value, headers = _record(event, event_id, source)
            await producer.send_and_wait(topic_name(type(event)), value, key=key, headers=headers)
    finally:
        await producer.stop()


def new_event_id() -> str:
    """A fresh id for an event that starts a chain; never one the CPR guard refuses."""
    return minted_free_of_cpr(lambda _: str(uuid.uuid4()))


async def partitions_of(access: KafkaAccess, topic: str) -> list[TopicPartition]:
    """The partitions of ``topic``, as the cluster describes them."""
    admin = access.admin()
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(TopicPartition(topic, p["partition"]) for d in described for p in d["partitions"])


async def end_offsets(access: KafkaAccess, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
    """The next offset to be written on each partition (its high-water mark)."""
    if not partitions:
        return {}
    consumer = access.consumer(enable_auto_commit=False)
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(list(partitions)))
    finally:
        await consumer.stop()


async def group_lag(access: KafkaAccess, group: str) -> dict[TopicPartition, tuple[int, int]]:
    """For each partition the group has committed on: (committed offset, end offset)."""
    admin = access.admin()
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    ends = await end_offsets(access, list(committed))
    return {tp: (meta.offset, ends[tp]) for tp, meta in committed.items() if meta.offset >= 0}


class ReadTimeout(RuntimeError):
    """A topic could not be read to its end in the time allowed."""


async def read_records(access: KafkaAccess, topics: Sequence[str], timeout: float = 30.0) -> list[Any]:
    """Every record now on ``topics``, from the log start to the current end, without a group.

    For operators' tools and checks that look at a whole topic (dead letters, a demo's
    results); services consume through their groups instead.
    """
    partitions: list[TopicPartition] = []
    for topic in topics:
        partitions += await partitions_of(access, topic)
    if not partitions:
        return []
    # "earliest" as the reset policy too: assign() starts a background reset that would
    # otherwise race the explicit seeks below and leave a partition at its end.
    consumer = access.consumer(enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign(partitions)
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        for tp, offset in starts.items():
            consumer.seek(tp, offset)
        found: list[Any] = []
        deadline = time.monotonic() + timeout
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            if time.monotonic() > deadline:
                raise ReadTimeout(f"could not read {', '.join(topics)} to the end in {timeout:.0f} s")
            batch = await consumer.getmany(*partitions, timeout_ms=500)
            for tp, items in batch.items():
                found += [r for r in items if r.offset < ends[tp]]
        return found
    finally:
        await consumer.stop()
