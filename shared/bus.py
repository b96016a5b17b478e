"""The event bus: how a service consumes, emits and dead-letters CloudEvents on Kafka.

A :class:`Service` is one process: a consume loop that hands decoded events to plain async
handlers (one event at a time, or a partition's poll batch at once, which a store can apply
in one transaction: a replay of the whole log then commits once per batch), an HTTP server
for probes and the service's API, and one way to emit.

Delivery is at-least-once. An offset is committed only when the handler returned, and a
handler returns only after its effect and any event it emitted are durable (emits wait for
the broker's acknowledgement), so an offset is never committed ahead of its effect. A
record that cannot be decoded, or whose handler raises, is copied with its original headers
and the reason to the topic's dead-letter topic, and the consumer goes on with the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.errors import (
    CommitFailedError,
    GroupCoordinatorNotAvailableError,
    GroupLoadInProgressError,
    KafkaError,
    NotCoordinatorForGroupError,
    TopicAlreadyExistsError,
)
from aiokafka.structs import OffsetAndMetadata
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from shared import telemetry
from shared.config import ArchiveSettings, KafkaSettings, ServiceSettings, SettingsError, StateSettings
from shared.encryption import ArchiveKey, ArchiveKeyError, check_archive_key
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
from shared.http import ReadinessCheck, make_web, serve, tls_context
from shared.identifiers import minted_free_of_cpr
from shared.kafka import KafkaAccess, kafka_access
from shared.metrics import (
    CONSUMER_LAG,
    DLQ_SENDS,
    EVENTS_EMITTED,
    EVENTS_FAILED,
    EVENTS_PROCESSED,
    LATENCY,
    prepare_service,
)
from shared.retry import Backoff, GaveUp, retrying
from shared.topics import EMITS, SUBSCRIPTIONS, Topic, all_topics, consumer_group, dlq_name, topic_name

E = TypeVar("E", bound=Event)
Handler = Callable[[Envelope[E]], Awaitable[None]]
Work = Callable[[], Coroutine[Any, Any, None]]

DLQ_HEADER_PREFIX = "genomhub_dlq_"
DEAD_LETTER_RETRIES = Backoff(0.5, 7)
"""A dead letter the broker cannot take is tried again for half a minute (0.5 s doubling to
16 s between seven sends); then the process exits, and the record comes again after its restart."""
EXIT_UNDELIVERABLE = 75  # EX_TEMPFAIL: restart me
TOPICS_WAIT_S = 120.0
COMMIT_INTERVAL_S = 1.0
MAX_HANDLING_S = 1000
log = telemetry.get_logger(__name__)


@dataclass(frozen=True)
class Consumed(Generic[E]):
    """One decoded record of a poll batch, with the consumer span it is handled in.

    A batch handler applies many records at once, but each record still has its own span in
    its own submission's trace: :meth:`current` makes it the current span, so that what is
    kept or emitted for the record (billing's accrual traceparent, the indexer's indexed
    event) belongs to that record's trace and not to its neighbour's.
    """

    envelope: Envelope[E]
    span: Span

    @contextlib.contextmanager
    def current(self) -> Iterator[None]:
        bound = telemetry.bind(submission_id=self.envelope.subject, event_id=self.envelope.id)
        try:
            with trace.use_span(self.span, end_on_exit=False):
                yield
        finally:
            telemetry.unbind(bound)


BatchHandler = Callable[[Sequence[Consumed[E]]], Awaitable[None]]


@dataclass(frozen=True)
class _Route:
    """What the consume loop does with a topic's records: one handler call per record, or
    one per poll batch of a partition."""

    model: type[Event]
    handler: Handler[Any] | None = None
    batch_handler: BatchHandler[Any] | None = None


async def ensure_topics(
    admin_access: KafkaAccess, partitions: int, replicas: int, topics: Sequence[Topic] | None = None
) -> list[str]:
    """Create every registered topic (or each of ``topics``) that does not exist yet; returns
    those it created.

    An admin's step at stack start (the local broker runs it; in Kubernetes the Topic
    Operator creates them from KafkaTopic resources): services may not create topics.
    """
    admin = admin_access.admin()
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(t.name, t.partitions, replicas, topic_configs=t.config)
            for t in (all_topics(partitions) if topics is None else topics)
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
    """One genomhub service process; ``app.py`` of each service builds one and wires it.

    The process runs, on one event loop: a consumer of the service's subscriptions (one
    aiokafka consumer in the service's group; each record is handed to its handler in turn,
    or each partition's poll batch to its batch handler, partition order kept), one
    idempotent producer for what it emits and dead-letters, its
    HTTP server (probes, metrics, the service's API), and the background work ``app.py``
    registers with :meth:`task` and :meth:`timer`. Work that fails stops the process with
    a non-zero status, so that its supervisor (Kubernetes, ``genomhub up``) starts it again.
    """

    def __init__(
        self,
        name: str,
        settings: ServiceSettings,
        http_port: int | None = None,
        principal: str | None = None,
        *,
        whole_log: bool = False,
        topics: Sequence[str] | None = None,
    ) -> None:
        """``principal`` is whose credentials the process uses: the service's own (its name)
        unless a test's probe, which is no registered service, says otherwise.

        A ``whole_log`` service keeps what it consumed in memory only, so it has no consumer
        group and no committed offsets: each start it reads every partition of its
        subscriptions from the log's start (committed records only), once :meth:`start_consuming`
        is called, and :attr:`caught_up` is set when it has reached the log's end as it stood
        then. Every other service consumes from the start of its run.

        ``topics`` are the topics on its broker it waits for at start, when not the ones the
        registry says it consumes and emits (a spoke: its feed; what it emits goes to the hub's)."""
        self.name = name
        self._topics = list(topics) if topics is not None else None
        self.whole_log = whole_log
        self._consuming = asyncio.Event()
        if not whole_log:
            self._consuming.set()
        self.caught_up = asyncio.Event()
        """Set once the consumer has handled every record that was on its partitions when it
        started (a whole-log service's state is then the log's)."""
        self.settings = settings
        self.http_port = http_port if http_port is not None else settings.port
        self.source = f"/genomhub/{name}"
        self.group = consumer_group(name)
        telemetry.setup(name, settings.telemetry.log_level)
        self.tracer = telemetry.tracer(f"genomhub.{name}")
        self.readiness: list[ReadinessCheck] = [self._broker_reachable]
        self.web = make_web(self.readiness, self._record_lag)
        prepare_service(name)
        self.access = kafka_access(principal or name, settings.kafka, settings.state)
        self._handlers: dict[str, _Route] = {}
        self._background: list[Work] = []
        self._producer: AIOKafkaProducer | None = None

    # -- consuming -------------------------------------------------------------------
    def start_consuming(self) -> None:
        """Let a whole-log service's consumer start (when what it needs first is ready)."""
        self._consuming.set()

    def on(self, model: type[E], handler: Handler[E]) -> None:
        """Run ``handler`` for each event on ``model``'s topic; failures go to its DLQ."""
        self._route(_Route(model, handler=handler))

    def on_batch(self, model: type[E], handler: BatchHandler[E]) -> None:
        """Run ``handler`` once per poll batch of a partition of ``model``'s topic, with every
        record of it that decodes, so that it can apply them in one transaction.

        The handler must apply all of them or raise having applied none durably (or only
        what is idempotent to apply again). When it raises, the loop hands it each record
        alone, and dead-letters only those that fail alone: a bad record neither rolls back
        the good ones of its batch nor is lost. The batch's offsets are committed only after
        the handler returned, as for :meth:`on`.
        """
        self._route(_Route(model, batch_handler=handler))

    def _route(self, route: _Route) -> None:
        model = route.model
        if self.name in SUBSCRIPTIONS and model not in SUBSCRIPTIONS[self.name]:
            raise ValueError(
                f"{self.name} is not registered to consume {model.event_name} (shared/topics.py)"
            )
        topic = topic_name(model)
        if topic in self._handlers:
            raise ValueError(f"{self.name} already has a handler for {model.event_name}")
        self._handlers[topic] = route

    def _span(self, model: type[Event], message: Any, headers: Headers) -> Span:
        """The consumer span of one record, in the trace its producer started."""
        return self.tracer.start_span(
            f"{self.name} {model.event_name}",
            context=telemetry.extract(headers),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.destination.name": message.topic,
                "messaging.kafka.offset": message.offset,
            },
        )

    async def _decoded(
        self, model: type[E], message: Any, headers: Headers, span: Span
    ) -> Envelope[E] | None:
        """The record's envelope; None when it does not decode, having dead-lettered it."""
        try:
            envelope = decode(headers, message.value, model, message.key)
        except UndecodableEvent as exc:
            span.set_status(Status(StatusCode.ERROR, str(exc)))
            await self.dead_letter(message, headers, exc.code, str(exc))
            return None
        except Exception as exc:  # decode says what is wrong; if it ever fails otherwise,
            # the record is still dead-lettered rather than stop the consumer on it
            log.exception("decoding failed", topic=message.topic, offset=message.offset)
            await self.dead_letter(message, headers, "undecodable", type(exc).__name__)
            return None
        span.set_attribute("genomhub.submission_id", envelope.subject)
        span.set_attribute("cloudevents.event_id", envelope.id)
        return envelope

    async def _failed(
        self, model: type[Event], message: Any, headers: Headers, span: Span, exc: Exception
    ) -> None:
        """Dead-letter a record whose handler raised: a refusal with its own code, any other
        failure as ``handler_failed``."""
        EVENTS_FAILED.labels(self.name, model.event_name).inc()
        span.set_status(Status(StatusCode.ERROR, str(exc)))
        if isinstance(exc, RefusedEvent):  # the handler refused it before changing anything
            await self.dead_letter(message, headers, exc.code, str(exc))
            return
        span.record_exception(exc)
        log.error("handler failed", topic=message.topic, offset=message.offset, exc_info=exc)
        await self.dead_letter(message, headers, "handler_failed", f"{type(exc).__name__}: {exc}")

    async def deliver(self, model: type[E], handler: Handler[E], message: Any) -> None:
        headers = normalise_headers(message.headers)
        started = time.perf_counter()
        span = self._span(model, message, headers)
        with trace.use_span(span, end_on_exit=True):
            envelope = await self._decoded(model, message, headers, span)
            if envelope is None:
                return
            bound = telemetry.bind(submission_id=envelope.subject, event_id=envelope.id)
            try:
                await handler(envelope)
            except Exception as exc:  # any failure dead-letters the record; the loop goes on
                await self._failed(model, message, headers, span, exc)
                return
            finally:
                telemetry.unbind(bound)
            EVENTS_PROCESSED.labels(self.name, model.event_name).inc()
            LATENCY.labels(self.name, model.event_name).observe(time.perf_counter() - started)

    async def deliver_batch(self, model: type[E], handler: BatchHandler[E], messages: Sequence[Any]) -> None:
        """Decode a partition's poll batch, dead-letter what does not decode, and hand the
        rest to ``handler`` at once; on failure, record by record (see :meth:`on_batch`)."""
        started = time.perf_counter()
        batch: list[tuple[Consumed[E], Any, Headers]] = []
        try:
            for message in messages:
                headers = normalise_headers(message.headers)
                span = self._span(model, message, headers)
                envelope = await self._decoded(model, message, headers, span)
                if envelope is None:
                    span.end()
                    continue
                batch.append((Consumed(envelope, span), message, headers))
            await self._apply_batch(model, handler, batch)
        finally:
            for consumed, _, _ in batch:
                consumed.span.end()
        if batch:
            LATENCY.labels(self.name, model.event_name).observe((time.perf_counter() - started) / len(batch))

    async def _apply_batch(
        self, model: type[E], handler: BatchHandler[E], batch: Sequence[tuple[Consumed[E], Any, Headers]]
    ) -> None:
        if not batch:
            return
        try:
            await handler([consumed for consumed, _, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                consumed, message, headers = batch[0]
                with consumed.current():
                    await self._failed(model, message, headers, consumed.span, exc)
                return
            # Which record failed is the handler's to say alone: each one again, by itself.
            log.warning("batch failed; applying its records one by one", size=len(batch), error=str(exc))
            for item in batch:
                await self._apply_batch(model, handler, [item])
            return
        EVENTS_PROCESSED.labels(self.name, model.event_name).inc(len(batch))

    async def consume(self, done: _Handled) -> None:
        """Hand every record of the subscriptions to its handler, for as long as the process runs.

        A record's offset is committed only once its handler returned (its effect durable,
        anything it emitted acknowledged) or it was dead-lettered, so an offset is never
        committed ahead of its effect. Commits are batched (at most ``COMMIT_INTERVAL_S``
        apart, and at the end of every fetch): a crash before one delivers the last few
        handled records again, which every handler takes as a no-op.

        Replicas share the partitions, and a rebalance (a replica joins or leaves) hands a
        partition on only after what was handled of it is committed (:class:`_CommitOnRevoke`):
        the record being handled is finished first, and the rest of a fetch made before the
        rebalance is dropped, since the partition's next owner, this process or another,
        starts again from the committed offset. So a rebalance delivers nothing twice.
        """
        while True:
            batches = await done.consumer.getmany(timeout_ms=1000)
            generation = done.generation
            for partition, records in batches.items():
                route = self._handlers[partition.topic]
                if route.batch_handler is not None:
                    async with done.handling:
                        if not done.current(generation) or partition not in done.consumer.assignment():
                            continue  # fetched before a rebalance: the partition's owner goes on
                        await self.deliver_batch(route.model, route.batch_handler, records)
                        done.mark(partition, records[-1].offset + 1)
                    if done.due():
                        await done.commit()
                    continue
                assert route.handler is not None
                for record in records:
                    async with done.handling:
                        if not done.current(generation) or partition not in done.consumer.assignment():
                            break  # fetched before a rebalance: the partition's owner goes on
                        await self.deliver(route.model, route.handler, record)
                        done.mark(partition, record.offset + 1)
                    if done.due():
                        await done.commit()
            await done.commit()
            if not self.caught_up.is_set() and await done.reached_ends():
                log.info("caught up with the log", service=self.name)
                self.caught_up.set()

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

        async def send() -> None:
            await self.producer.send_and_wait(dlq, message.value, key=message.key, headers=letter)

        def unsent(exc: BaseException, pause: float) -> None:
            log.warning("dead letter not sent", topic=dlq, error=str(exc), retry_in=pause)

        try:  # the broker may be unreachable a while: wait, then try again
            await retrying(send, DEAD_LETTER_RETRIES, (Exception,), unsent)
            DLQ_SENDS.labels(self.name, dlq).inc()
            return
        except GaveUp:
            pass
        log.critical("dead letter could not be sent; exiting so the record is delivered again", topic=dlq)
        telemetry.flush()
        os._exit(EXIT_UNDELIVERABLE)

    # -- emitting --------------------------------------------------------------------
    @property
    def producer(self) -> AIOKafkaProducer:
        """The process's one producer; it exists while :meth:`run` runs."""
        if self._producer is None:
            raise RuntimeError(f"{self.name} is not running: nothing can be emitted yet")
        return self._producer

    async def emit(
        self, event: Event, *, cause: Envelope[Any] | None = None, event_id: str | None = None
    ) -> str:
        """Send ``event`` and wait until the broker has it; returns its id.

        Its id is derived from ``cause`` (the event being handled), so a replay emits the
        same id again; an event that starts a chain (an upload) passes its own ``event_id``.
        A service emits only what the registry says it emits: the broker refuses the rest.
        """
        event_id, sent = await self._send(event, cause, event_id)
        await sent
        EVENTS_EMITTED.labels(self.name, event.event_name).inc()
        return event_id

    async def emit_all(self, caused: Sequence[tuple[Event, Consumed[Any]]]) -> None:
        """Send each event, caused by a record of a batch, and wait until the broker has them all.

        Sent in order, each in its cause's trace, and acknowledged together: a batch handler
        waits one round trip for its emits rather than one per event.
        """
        pending = []
        for event, cause in caused:
            with cause.current():
                pending.append(await self._send(event, cause.envelope, None))
        await asyncio.gather(*(sent for _, sent in pending))
        for event, _ in caused:
            EVENTS_EMITTED.labels(self.name, event.event_name).inc()

    async def _send(
        self, event: Event, cause: Envelope[Any] | None, event_id: str | None
    ) -> tuple[str, asyncio.Future[Any]]:
        """Hand ``event`` to the producer; returns its id and the broker's acknowledgement."""
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
            sent = await self.producer.send(topic_name(type(event)), value, key=key, headers=headers)
        return event_id, sent

    # -- background work -------------------------------------------------------------
    def task(self, work: Work) -> Work:
        """Run ``work`` beside the consumer once the process has started (the receiver's
        resending of unsent events, the harmoniser's job runner)."""
        self._background.append(work)
        return work

    def timer(self, interval: float) -> Callable[[Work], Work]:
        """Run the decorated work every ``interval`` seconds, the first time one interval
        after the start (billing's month close)."""

        def register(work: Work) -> Work:
            async def every() -> None:
                while True:
                    await asyncio.sleep(interval)
                    await work()

            self._background.append(every)
            return work

        return register

    # -- running ---------------------------------------------------------------------
    async def _record_lag(self) -> None:
        lag = await group_lag(self.access, self.group)
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
        if self._topics is not None:
            return sorted(self._topics)
        consumed = [topic_name(m) for m in SUBSCRIPTIONS.get(self.name, ())]
        return sorted(
            {*consumed, *map(dlq_name, consumed), *(topic_name(m) for m in EMITS.get(self.name, ()))}
        )

    @property
    def touches_archive(self) -> bool:
        """Whether this service reads or writes archived bytes: its section has the archive part."""
        return isinstance(getattr(self.settings, "archive", None), ArchiveSettings)

    @cached_property
    def archive_key(self) -> ArchiveKey:
        """The archive key (and the retiring one during a rotation), loaded once per process.

        Every service with the archive part loads it here before it takes any work, so a
        missing file, a wrong passphrase or mismatched halves stop the process at start with
        one line naming the setting, rather than on its first file."""
        archive = getattr(self.settings, "archive", None)
        if not isinstance(archive, ArchiveSettings):
            raise TypeError(f"{self.name} has no archive settings: it touches no archived bytes")
        try:
            return check_archive_key(archive.key)
        except ArchiveKeyError as exc:
            raise SettingsError(f"{self.name} cannot start: {exc}") from None

    def run(self) -> None:
        """Check the archive key if the service touches archived bytes, wait for the topics,
        then consume, serve HTTP and run the background work until SIGTERM or SIGINT; exits
        non-zero when any of it failed."""
        if self.touches_archive:
            log.info("archive key loaded", service=self.name, fingerprint=self.archive_key.fingerprint)
        with contextlib.suppress(KeyboardInterrupt):
            failed = asyncio.run(self._run())
            if failed:
                raise SystemExit(1)

    async def _run(self) -> bool:
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        await wait_for_topics(self.access, self.topics(), TOPICS_WAIT_S)
        producer = self.access.producer(acks="all", enable_idempotence=True)
        await producer.start()
        self._producer = producer
        handled = self._subscribe() if self._handlers else None
        runner = None
        work: list[asyncio.Task[None]] = []
        try:
            runner, _ = await serve(
                self.web,
                self.settings.http.host,
                self.http_port,
                tls=tls_context(self.settings.http.tls_cert, self.settings.http.tls_key),
                head_timeout=self.settings.http.head_timeout,
            )
            if handled is not None:
                work.append(
                    asyncio.create_task(self._start_and_consume(handled), name=f"{self.name} consumer")
                )
            work += [asyncio.create_task(w(), name=f"{self.name} {w.__name__}") for w in self._background]
            return await until_stopped_or_failed(stopping, work)
        finally:
            # The record being handled is finished first: cut off mid-way, its effect could be
            # made and yet its offset not committed, and the partition's next owner repeat it.
            async with handled.handling if handled is not None else contextlib.nullcontext():
                for task in work:
                    task.cancel()
                await asyncio.gather(*work, return_exceptions=True)
            if handled is not None:
                await handled.commit()
                await handled.consumer.stop()
            if runner is not None:
                await runner.cleanup()
            await producer.stop()
            self._producer = None
            telemetry.flush()

    async def _start_and_consume(self, handled: _Handled) -> None:
        await self._consuming.wait()
        consumer = handled.consumer
        await consumer.start()
        if self.whole_log:
            handled.ends = await assign_from_start(self.access, consumer, sorted(self._handlers))
        await self.consume(handled)

    def _subscribe(self) -> _Handled:
        """The service's consumer, subscribed to what it handles, with what it has handled
        (a whole-log service's is assigned every partition when it starts, in no group)."""
        if self.whole_log:
            consumer = self.access.consumer(
                enable_auto_commit=False, auto_offset_reset="earliest", isolation_level="read_committed"
            )
            return _Handled(consumer, grouped=False)
        consumer = self.access.consumer(
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # A killed member holds its partitions until its session expires; keep that short
            # so a restarted service resumes within seconds, not a minute.
            session_timeout_ms=10_000,
            heartbeat_interval_ms=2_000,
            # A handler may take long (a whole genome's QC): the group waits this long for it.
            max_poll_interval_ms=MAX_HANDLING_S * 1000,
            rebalance_timeout_ms=60_000,
            # A dead letter redriven in an aborted transaction is never delivered.
            isolation_level="read_committed",
        )
        handled = _Handled(consumer)
        consumer.subscribe(sorted(self._handlers), listener=_CommitOnRevoke(handled))
        return handled


async def until_stopped_or_failed(stopping: asyncio.Event, work: Sequence[asyncio.Task[None]]) -> bool:
    """Wait for a signal to stop, or for any work to fail (True). Work that is done is
    done (the receiver's resending at start); the consumer and the timers never are."""
    stop = asyncio.create_task(stopping.wait())
    running: set[asyncio.Task[Any]] = {stop, *work}
    try:
        while True:
            finished, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in finished - {stop}:
                if task.cancelled() or task.exception() is not None:
                    error = "cancelled" if task.cancelled() else repr(task.exception())
                    log.critical("stopping: work failed", work=task.get_name(), error=error)
                    return True
                log.info("work done", work=task.get_name())
            if stop in finished:
                return False
    finally:
        stop.cancel()


class _Handled:
    """The next offset of each partition whose records are handled, not yet committed; and
    the consumer's rebalances, which records fetched before one must not outlive."""

    def __init__(self, consumer: AIOKafkaConsumer, *, grouped: bool = True) -> None:
        self.consumer = consumer
        self.grouped = grouped
        """False for a whole-log service's consumer: no group, nothing to commit."""
        self.ends: dict[TopicPartition, int] = {}
        """Each partition's end when the consumer started; empty until then (a grouped
        consumer's ends are read at its first :meth:`reached_ends`)."""
        self.pending: dict[TopicPartition, int] = {}
        self.last = time.monotonic()
        self.handling = asyncio.Lock()
        """Held while a record is handled: a revocation or a stop waits for it."""
        self.generation = 0
        """Counts revocations; records fetched in an earlier generation are not delivered."""
        self.rebalancing = False
        """Between a revocation and the next assignment, when no fetched record is current."""

    def current(self, generation: int) -> bool:
        """Whether records fetched in ``generation`` may still be delivered."""
        return not self.rebalancing and generation == self.generation

    def mark(self, partition: TopicPartition, next_offset: int) -> None:
        self.pending[partition] = next_offset

    def due(self) -> bool:
        return time.monotonic() - self.last >= COMMIT_INTERVAL_S

    async def reached_ends(self) -> bool:
        """Whether every partition owned is at or past its end as it was at the start."""
        owned = self.consumer.assignment()
        if not owned:
            return False
        if not self.ends:
            self.ends = dict(await self.consumer.end_offsets(list(owned)))
        return await reached(self.consumer, self.ends)

    async def commit(self) -> None:
        self.last = time.monotonic()
        if not self.grouped:
            self.pending.clear()
            return
        owned = self.consumer.assignment()
        offsets = {tp: offset for tp, offset in self.pending.items() if tp in owned}
        self.pending.clear()
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except CommitFailedError as exc:  # the group moved on; the new owner delivers them again
            log.warning("offsets not committed after a rebalance", error=str(exc))


class _CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """At a rebalance, once the record being handled is finished, commits what was handled of
    the partitions being taken away, so their next owner starts after it rather than
    delivering it again, and stops the delivery of what was fetched before."""

    def __init__(self, handled: _Handled) -> None:
        self.handled = handled

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self.handled.handling:  # the record being handled is finished first
            self.handled.generation += 1
            self.handled.rebalancing = True
            await self.handled.commit()
        log.info("partitions revoked", partitions=sorted(f"{tp.topic}[{tp.partition}]" for tp in revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.handled.rebalancing = False
        log.info("partitions assigned", partitions=sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))


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
    events: Sequence[tuple[Event, str]],
    source: str,
    settings: KafkaSettings | None = None,
    state: StateSettings | None = None,
    *,
    principal: str,
) -> None:
    """Emit events from a command rather than a running service (e.g. a month close).

    Each item is an event with its id. Uses a plain aiokafka producer with ``principal``'s
    credentials (``finance`` for a month close) and the same envelope and trace injection
    as :meth:`Service.emit`; the broker refuses a topic the principal may not write.
    """
    producer = kafka_access(principal, settings, state).producer(acks="all", enable_idempotence=True)
    await producer.start()
    try:
        # Sent in order and acknowledged together: one round trip for many events (a log
        # written for a replay), not one per event; the idempotent producer keeps the order.
        sent = []
        for event, event_id in events:
            key, value, headers = _record(event, event_id, source)
            sent.append(await producer.send(topic_name(type(event)), value, key=key, headers=headers))
        await asyncio.gather(*sent)
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
    committed = await committed_offsets(access, group)
    ends = await end_offsets(access, list(committed))
    return {tp: (meta.offset, ends[tp]) for tp, meta in committed.items() if meta.offset >= 0}


async def assign_from_start(
    access: KafkaAccess, consumer: AIOKafkaConsumer, topics: Sequence[str]
) -> dict[TopicPartition, int]:
    """Give a started consumer in no group every partition of ``topics``, from the log's
    start; returns each partition's end as it is now, for :func:`reached`."""
    partitions = [tp for topic in topics for tp in await partitions_of(access, topic)]
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    return dict(await consumer.end_offsets(partitions))


async def reached(consumer: AIOKafkaConsumer, ends: Mapping[TopicPartition, int]) -> bool:
    """Whether the consumer is at or past ``ends`` on every partition it has."""
    return all([await consumer.position(tp) >= ends.get(tp, 0) for tp in consumer.assignment()])


async def follow(access: KafkaAccess, topics: Sequence[str]) -> AsyncIterator[tuple[list[Any], bool]]:
    """Every committed record of ``topics`` from the log's start, then each new one as it
    comes, in no group: for a reader whose state is what it read (a spoke's verifier, which
    proves its feed again at every start). Yields each poll's records, in each partition's
    order, with whether the reader has reached the ends the topics had when it began."""
    consumer = access.consumer(
        enable_auto_commit=False, auto_offset_reset="earliest", isolation_level="read_committed"
    )
    await consumer.start()
    try:
        ends = await assign_from_start(access, consumer, topics)
        caught_up = False
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            caught_up = caught_up or await reached(consumer, ends)
            yield [r for tp in sorted(batches) for r in batches[tp]], caught_up
    finally:
        await consumer.stop()


class ReadTimeout(RuntimeError):
    """A topic could not be read to its end in the time allowed."""


async def read_records(
    access: KafkaAccess, topics: Sequence[str], timeout: float = 30.0, *, committed: bool = False
) -> list[Any]:
    """Every record now on ``topics``, from the log start to the current end, without a group.

    For operators' tools and checks that look at a whole topic (dead letters, a demo's
    results), and for a writer reading back its own topic at start (the publisher's feeds,
    ``committed``: only what its transactions committed, up to the last stable offset);
    services consume through their groups instead.
    """
    partitions: list[TopicPartition] = []
    for topic in topics:
        partitions += await partitions_of(access, topic)
    if not partitions:
        return []
    # "earliest" as the reset policy too: assign() starts a background reset that would
    # otherwise race the explicit seeks below and leave a partition at its end.
    isolation = "read_committed" if committed else "read_uncommitted"
    consumer = access.consumer(
        enable_auto_commit=False, auto_offset_reset="earliest", isolation_level=isolation
    )
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


# -- a consumer group and its offsets, seen from outside it (operators' tools) ---------------


COORDINATOR_ELECTION = 30.0
"""Seconds an operator's group question waits for the broker to elect the group's coordinator."""

_T = TypeVar("_T")


async def _asked_of_coordinator(access: KafkaAccess, group: str, ask: Callable[[Any], Awaitable[_T]]) -> _T:
    """``ask(admin)`` once the broker has a coordinator for ``group``.

    A broker elects coordinators only once ``__consumer_offsets`` exists, and it creates that
    topic on the first group question it is asked: on a fresh broker (a new stack, a restored
    cluster) an operator's first ``genomhub replay`` is that question, and the broker answers it
    with GroupCoordinatorNotAvailable while it creates the topic. Kafka calls the error
    retriable; it is asked again until the coordinator answers, for at most
    :data:`COORDINATOR_ELECTION` seconds.
    """
    deadline = time.monotonic() + COORDINATOR_ELECTION
    while True:
        admin = access.admin()
        await admin.start()
        try:
            return await ask(admin)
        except (
            GroupCoordinatorNotAvailableError,
            GroupLoadInProgressError,
            NotCoordinatorForGroupError,
        ) as exc:
            if time.monotonic() > deadline:
                raise KafkaError(
                    f"the broker elected no coordinator for group {group} in {COORDINATOR_ELECTION:.0f} s: {exc}"
                ) from exc
            log.info("waiting for the group's coordinator", group=group, error=type(exc).__name__)
        finally:
            await admin.close()
        await asyncio.sleep(0.5)


async def group_members(access: KafkaAccess, group: str) -> tuple[str, list[tuple[str, str]]]:
    """The group's state and the (client id, host) of each member, from DescribeGroups; an
    unknown group is ``("", [])``."""
    (response,) = await _asked_of_coordinator(
        access, group, lambda admin: admin.describe_consumer_groups([group])
    )
    for described in response.groups:
        error_code, name, state, _protocol_type, _protocol, members = described[:6]
        if name != group:
            continue
        if error_code:
            raise KafkaError(f"describing consumer group {group} failed with error code {error_code}")
        return str(state), [(str(m[1]), str(m[2])) for m in members]
    return "", []


async def committed_offsets(
    access: KafkaAccess, group: str, partitions: Sequence[TopicPartition] | None = None
) -> dict[TopicPartition, OffsetAndMetadata]:
    """What ``group`` has committed (on ``partitions``, or wherever it has), with metadata;
    a partition it never committed on has offset -1."""
    asked = None if partitions is None else list(partitions)
    found = await _asked_of_coordinator(
        access, group, lambda admin: admin.list_consumer_group_offsets(group, partitions=asked)
    )
    return dict(found)


async def log_bounds(
    access: KafkaAccess, partitions: Sequence[TopicPartition], at_millis: int | None = None
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int], dict[TopicPartition, int | None] | None]:
    """Each partition's log start and end, and, given ``at_millis``, the first offset at or
    after that time (None where no record is as late)."""
    consumer = access.consumer(enable_auto_commit=False)
    await consumer.start()
    try:
        starts = dict(await consumer.beginning_offsets(list(partitions)))
        ends = dict(await consumer.end_offsets(list(partitions)))
        by_time = None
        if at_millis is not None:
            found = await consumer.offsets_for_times({tp: at_millis for tp in partitions})
            by_time = {tp: (o.offset if o is not None else None) for tp, o in found.items()}
    finally:
        await consumer.stop()
    return starts, ends, by_time


class GroupNotEmpty(RuntimeError):
    """The broker refused offsets committed from outside a group: it has members."""


async def commit_group_offsets(
    access: KafkaAccess, group: str, offsets: dict[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """Commit ``offsets`` for ``group`` from outside it, and read them back.

    aiokafka 0.14's admin client has no AlterConsumerGroupOffsets, so a consumer with the
    group's id, assigned the partitions but never subscribed (so it never joins the group),
    commits them; the broker accepts such a commit only while the group has no members.
    """
    consumer = access.consumer(group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(dict(offsets))
    except CommitFailedError as exc:
        raise GroupNotEmpty(f"a member joined {group}") from exc
    finally:
        await consumer.stop()
    back = await committed_offsets(access, group, list(offsets))
    return {tp: meta.offset for tp, meta in back.items()}


class OutsideLog(LookupError):
    """An offset the partition does not hold (any longer, or yet)."""

    def __init__(self, start: int, end: int) -> None:
        super().__init__(f"the partition holds offsets {start} to {end - 1}")
        self.start, self.end = start, end


async def read_record(access: KafkaAccess, partition: TopicPartition, offset: int, timeout: float) -> Any:
    """The one record at ``offset`` of ``partition``, without a group."""
    consumer = access.consumer(enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([partition])
        start = (await consumer.beginning_offsets([partition]))[partition]
        end = (await consumer.end_offsets([partition]))[partition]
        if not start <= offset < end:
            raise OutsideLog(start, end)
        consumer.seek(partition, offset)
        return await asyncio.wait_for(consumer.getone(partition), timeout)
    finally:
        await consumer.stop()


@dataclass(frozen=True)
class OutgoingRecord:
    """A record to send as it is: its key, value and headers already made (a redrive)."""

    topic: str
    value: bytes | None
    key: bytes | None
    partition: int | None
    headers: Headers


@contextlib.asynccontextmanager
async def transactional_producer(
    access: KafkaAccess, transactional_id: str
) -> AsyncIterator[AIOKafkaProducer]:
    """A started transactional producer. Starting it fences any producer of the same
    ``transactional_id`` still in flight and waits for its transaction to end, so what is
    read after the start is what that transaction left."""
    producer = access.producer(transactional_id=transactional_id, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def send_with_offsets(
    producer: AIOKafkaProducer,
    records: Sequence[OutgoingRecord],
    offsets: dict[TopicPartition, OffsetAndMetadata],
    group: str,
) -> list[Any]:
    """Send ``records`` and commit ``offsets`` for ``group`` in one transaction: all or none.

    A record's partition that its topic no longer has (re-partitioned) is left to the key.
    """
    sent: list[Any] = []
    async with producer.transaction():
        for record in records:
            partition = record.partition
            if partition is not None and partition not in await producer.partitions_for(record.topic):
                partition = None
            sent.append(
                await producer.send_and_wait(
                    record.topic, record.value, key=record.key, partition=partition, headers=record.headers
                )
            )
        await producer.send_offsets_to_transaction(offsets, group)
    return sent
