"""Every Prometheus metric genomhub exports: the one place each is named, labelled and pre-created.

A labelled series of ``prometheus_client`` exists only from its first ``labels()`` call, so a
counter that has not yet counted is absent from ``/metrics``: ``absent()`` fires for a healthy
service, and ``rate()`` over a series born at 3 has no 0 to rise from, so the first
failures are never seen. Hence every label value a service can produce is created at 0 when
the service starts (:func:`prepare_service`, :func:`prepare_receiver`); only the consumer
lag's partitions, which the broker assigns, appear at the first scrape after an assignment.

Names follow Prometheus's rules: a counter's name ends in ``_total`` (the client adds it),
and a name that measures something ends in its unit (``_seconds``, ``_bytes``, ``_records``).
The alert rules in ``k8s/monitoring/`` use these names; a unit test holds them together.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from prometheus_client import Counter, Gauge, Histogram

from shared.events import Region
from shared.topics import EMITS, SUBSCRIPTIONS, dlq_name, topic_name

EVENTS_PROCESSED = Counter("genomhub_events_processed", "Events handled successfully", ["service", "event"])
EVENTS_FAILED = Counter("genomhub_events_failed", "Events whose handling failed", ["service", "event"])
EVENTS_EMITTED = Counter(
    "genomhub_events_emitted", "Events emitted and acknowledged by the broker", ["service", "event"]
)
DLQ_SENDS = Counter("genomhub_dlq_sends", "Records sent to a dead-letter topic", ["service", "topic"])
LATENCY = Histogram("genomhub_processing_seconds", "Time to handle one event", ["service", "event"])
CONSUMER_LAG = Gauge(
    "genomhub_consumer_lag_records",
    "Records on a partition that the service's consumer group has not yet committed",
    ["service", "topic", "partition"],
)

RECEIVER_REQUESTS = Counter(
    "genomhub_receiver_requests",
    "Receiver API requests answered, by operation and outcome",
    ["operation", "outcome"],
)
RECEIVER_RECEIVED_BYTES = Counter(
    "genomhub_receiver_received_bytes",
    "File bytes the receiver took into the archive (an interrupted upload's kept prefix included), "
    "by region and by how they came: a PUT's body (upload) or a copy from the region's inbox (register)",
    ["region", "via"],
)
RECEIVER_UPLOADS_IN_FLIGHT = Gauge(
    "genomhub_receiver_uploads_in_flight", "File bodies being received now, by region", ["region"]
)
RECEIVED_VIA = ("upload", "register")

SPOKE_REFUSED = Counter(
    "genomhub_spoke_refused",
    "Feed records or checkpoints a spoke refused, by the reason it gave (shared.feed.FeedRefusal)",
    ["reason"],
)
SPOKE_REVISION = Gauge("genomhub_spoke_revision", "The revision of its feed a spoke shows")


class RequestOutcome(StrEnum):
    """How a request ended, in the few kinds an operator alerts on."""

    ACCEPTED = "accepted"
    """2xx: done, or a part of a file taken."""
    REFUSED = "refused"
    """4xx other than the below: the client's request was wrong (invalid, unknown, conflicting)."""
    UNAUTHORISED = "unauthorised"
    """401 or 403: no valid token, or a region acting for another."""
    BUSY = "busy"
    """503 or 429: every upload slot taken, or the broker unreachable; the client comes back."""
    INTERRUPTED = "interrupted"
    """An upload's body stopped before its end (cut off, silent or too slow); its prefix is kept."""
    FAILED = "failed"
    """5xx other than 503: the service's own fault."""


def request_outcome(status: int) -> RequestOutcome:
    """The outcome of an answer with ``status`` (an interrupted upload is told by its handler)."""
    if status < 400:
        return RequestOutcome.ACCEPTED
    if status in (401, 403):
        return RequestOutcome.UNAUTHORISED
    if status in (429, 503):
        return RequestOutcome.BUSY
    if status < 500:
        return RequestOutcome.REFUSED
    return RequestOutcome.FAILED


def prepare_service(service: str) -> None:
    """Create at 0 every series of ``service`` that the registry says it can produce."""
    for model in SUBSCRIPTIONS.get(service, ()):
        EVENTS_PROCESSED.labels(service, model.event_name)
        EVENTS_FAILED.labels(service, model.event_name)
        LATENCY.labels(service, model.event_name)
        DLQ_SENDS.labels(service, dlq_name(topic_name(model)))
    for model in EMITS.get(service, ()):
        EVENTS_EMITTED.labels(service, model.event_name)


def prepare_receiver(operations: Iterable[str]) -> None:
    """Create at 0 the receiver's series: each operation with each outcome, each region's bytes
    and uploads in flight."""
    for operation in operations:
        for outcome in RequestOutcome:
            RECEIVER_REQUESTS.labels(operation, outcome.value)
    for region in Region:
        for via in RECEIVED_VIA:
            RECEIVER_RECEIVED_BYTES.labels(region.value, via)
        RECEIVER_UPLOADS_IN_FLIGHT.labels(region.value)
