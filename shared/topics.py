"""The registry of genomhub's Kafka topics: the one list that services, the start-up topic
creation and the Kubernetes KafkaTopic resources are all made from.

Core topics keep their events forever: the log is the record a replay starts from, so
nothing may age out of it. Dead-letter topics keep theirs for 90 days, long enough for an
operator to look and redrive.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.events import EVENT_MODELS, Event, FileReceived, Harmonised, Indexed, Validated

DLQ_SUFFIX = ".dlq"
DLQ_RETENTION_MS = 90 * 24 * 3600 * 1000


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int
    retention_ms: int  # -1: forever

    @property
    def config(self) -> dict[str, str]:
        return {"retention.ms": str(self.retention_ms), "cleanup.policy": "delete"}


def topic_name(model: type[Event]) -> str:
    """``genomhub.<event>.v1``: a version bump of an event means a new topic."""
    return f"genomhub.{model.event_name}.v1"


def dlq_name(topic: str) -> str:
    return topic + DLQ_SUFFIX


def all_topics(partitions: int) -> list[Topic]:
    """Every topic with its dead-letter topic, for a cluster with ``partitions`` per topic."""
    topics: list[Topic] = []
    for model in EVENT_MODELS:
        name = topic_name(model)
        topics.append(Topic(name, partitions, -1))
        topics.append(Topic(dlq_name(name), 1, DLQ_RETENTION_MS))
    return topics


SUBSCRIPTIONS: dict[str, tuple[type[Event], ...]] = {
    "receiver": (),
    "validator": (FileReceived,),
    "harmoniser": (Validated,),
    "indexer": (Validated, Harmonised),
    "billing": (Indexed,),
}
"""Which events each service consumes: its consumer group reads these topics."""


def consumer_group(service: str) -> str:
    """The Kafka consumer group of a service (its faust app id)."""
    return f"genomhub-{service}"
