"""The registry of genomhub's Kafka topics: the one list that services, the start-up topic
creation and the Kubernetes KafkaTopic resources are all made from.

Core topics keep their events forever: the log is the record a replay starts from, so
nothing may age out of it. Dead-letter topics keep theirs for 90 days, long enough for an
operator to look and redrive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shared.events import (
    EVENT_MODELS,
    AccessDecided,
    AccessRequested,
    AccessRevoked,
    AuditHead,
    Event,
    FileReceived,
    FileStaged,
    Harmonised,
    Indexed,
    RecallRequested,
    RecallUpdated,
    RefundCalculated,
    Region,
    ReharmonisationRequested,
    SpokeRevisionApplied,
    TierMoved,
    Validated,
    WorkingCopyIssued,
)

DLQ_SUFFIX = ".dlq"
DLQ_RETENTION_MS = 90 * 24 * 3600 * 1000


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int
    retention_ms: int  # -1: forever
    compacted: bool = False
    """Keep each key's last record (a spoke's feed), rather than every record."""

    @property
    def config(self) -> dict[str, str]:
        return {
            "retention.ms": str(self.retention_ms),
            "cleanup.policy": "compact" if self.compacted else "delete",
        }


KAFKA_INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state"})
"""The broker's own topics: committed offsets, and the transaction log of a redrive (which
commits its ledger in a transaction). Kafka makes and keeps them; genomhub makes no other
topic than its registered ones (:func:`all_topics`)."""


def topic_name(model: type[Event]) -> str:
    """``genomhub.<event>.v1``: a version bump of an event means a new topic."""
    return f"genomhub.{model.event_name}.v1"


def dlq_name(topic: str) -> str:
    return topic + DLQ_SUFFIX


def all_topics(partitions: int) -> list[Topic]:
    """Every event topic with its dead-letter topic, and each spoke's feed, for a cluster with
    ``partitions`` per topic."""
    topics: list[Topic] = []
    for model in EVENT_MODELS:
        name = topic_name(model)
        topics.append(Topic(name, partitions, -1))
        topics.append(Topic(dlq_name(name), 1, DLQ_RETENTION_MS))
    return topics + spoke_feeds(partitions)


def feed_topic(region: Region) -> str:
    """A spoke's catalogue feed (``shared.feed``): the topic MirrorMaker 2 carries to it, by
    the same name (``tools.kafka.mirror``)."""
    return f"genomhub.spoke.{region.value}.catalogue.v1"


def spoke_feeds(partitions: int) -> list[Topic]:
    """Each region's feed, compacted: a spoke that catches up or rebuilds reads each sample's
    last entry, not its history. Written by the publisher alone (:data:`FEED_WRITER`)."""
    return [Topic(feed_topic(region), partitions, -1, compacted=True) for region in Region]


SUBSCRIPTIONS: dict[str, tuple[type[Event], ...]] = {
    "receiver": (),
    "validator": (FileReceived,),
    "harmoniser": (Validated, ReharmonisationRequested),
    "indexer": (Validated, Harmonised, TierMoved, RecallUpdated, FileStaged),
    "billing": (Indexed,),
    "access": (Indexed, Harmonised, RecallUpdated, FileStaged),
    "archive": (FileReceived, Harmonised, RecallRequested),
    "publisher": (Indexed, AccessRequested, AccessDecided, AccessRevoked, SpokeRevisionApplied),
}
"""Which events each service consumes: its consumer group reads these topics."""


def consumer_group(service: str) -> str:
    """The Kafka consumer group of a service: its consumer's, whose committed offsets replays move."""
    return f"genomhub-{service}"


EMITS: dict[str, tuple[type[Event], ...]] = {
    "receiver": (FileReceived,),
    "validator": (Validated,),
    "harmoniser": (Harmonised,),
    "indexer": (Indexed,),
    "billing": (RefundCalculated,),
    "access": (AccessRequested, AccessDecided, AccessRevoked, WorkingCopyIssued, AuditHead, RecallRequested),
    "archive": (TierMoved, FileStaged, RecallUpdated, ReharmonisationRequested),
    "publisher": (),
    "spoke": (SpokeRevisionApplied,),
}
"""Which events each service emits: the only topics its principal may write, beside the
dead-letter topics of what it consumes."""

# -- who may do what on the broker ----------------------------------------------------------
#
# One principal per service, one for the operators' tools (`genomhub replay`, `genomhub dlq`),
# one for finance (`genomhub billing close` publishes refund-calculated) and the admin, who
# creates the topics and the grants at stack start and is a super user. The broker's local
# ACLs and the Strimzi KafkaUser resources are both made from GRANTS, so they cannot drift.

OPERATOR = "operator"
FINANCE = "finance"
ADMIN = "admin"
BROKER = "broker"
"""The broker's own principal (inter-broker and controller traffic); never a client's."""

SERVICES: tuple[str, ...] = tuple(SUBSCRIPTIONS)
"""Every genomhub service of the hub, in the order a submission passes them; each is also a principal."""
SPOKE = "spoke"
"""The service a region runs beside its own broker (``genomhub run spoke``): it reads its feed
there, mirrored from the hub, and acknowledges each revision it shows to the hub's broker."""


def spoke_principal(region: Region) -> str:
    """Whose credentials a region's spoke uses, on its own broker and on the hub's: one per
    region, so that a spoke's may read its own region's feed and no other (another region's
    feed holds that region's records whole)."""
    return f"{SPOKE}-{region.value}"


SPOKE_PRINCIPALS: tuple[str, ...] = tuple(spoke_principal(r) for r in Region)
CLIENT_PRINCIPALS: tuple[str, ...] = (*SERVICES, *SPOKE_PRINCIPALS, OPERATOR, FINANCE, ADMIN)
SUPER_USERS: tuple[str, ...] = (BROKER, ADMIN)
REDRIVE_ID = "genomhub-dlq-redrive"
FEED_WRITER = "publisher"
"""The one service that writes the spokes' feeds (not events: signed feed records)."""
PUBLISHER_TRANSACTIONAL_ID = "genomhub-publisher"
"""The feeds' writes are transactions under this id: a successor's first write fences a
writer that lost its lease without knowing it."""
"""Transactional id and ledger consumer group of `genomhub dlq redrive`."""

ResourceType = Literal["topic", "group", "transactionalId", "cluster"]
PatternType = Literal["literal", "prefix"]
Operation = Literal["Read", "Write", "Describe", "Create", "IdempotentWrite"]


@dataclass(frozen=True, order=True)
class Grant:
    """One allow ACL: ``operations`` on the resource named (or prefixed) ``name``."""

    resource: ResourceType
    name: str
    pattern: PatternType
    operations: tuple[Operation, ...]


def emitter_of(model: type[Event]) -> str:
    """The service whose principal writes ``model``'s topic."""
    (service,) = [s for s, models in EMITS.items() if model in models]
    return service


IDEMPOTENT_PRODUCER = Grant("cluster", "kafka-cluster", "literal", ("IdempotentWrite",))
"""Producers that write with ``enable_idempotence`` (the emitters, a month close, a redrive)
need this on the cluster to get a producer id; it allows nothing else."""


def kafka_user(principal: str) -> str:
    """The Kafka user (SCRAM name, Strimzi KafkaUser) of a genomhub principal."""
    return f"genomhub-{principal}"


def consumed_topics() -> list[str]:
    """Every core topic some service consumes: the ones with dead letters and replays."""
    return sorted({topic_name(m) for models in SUBSCRIPTIONS.values() for m in models})


def _service_grants(service: str) -> list[Grant]:
    group = consumer_group(service)
    grants = [Grant("topic", topic_name(m), "literal", ("Read", "Describe")) for m in SUBSCRIPTIONS[service]]
    grants += [
        Grant("topic", dlq_name(topic_name(m)), "literal", ("Write", "Describe"))
        for m in SUBSCRIPTIONS[service]
    ]
    grants += [Grant("topic", topic_name(m), "literal", ("Write", "Describe")) for m in EMITS[service]]
    grants.append(IDEMPOTENT_PRODUCER)
    if service != FEED_WRITER:
        grants.append(Grant("group", group, "literal", ("Read", "Describe")))
        return grants
    # The publisher reads its subscriptions whole at every start, in no group, and its feeds
    # are its state, read back at start too.
    grants += [Grant("topic", t.name, "literal", ("Read", "Write", "Describe")) for t in spoke_feeds(1)]
    grants.append(Grant("transactionalId", PUBLISHER_TRANSACTIONAL_ID, "literal", ("Write", "Describe")))
    return grants


def _operator_grants() -> list[Grant]:
    consumed = set(consumed_topics())
    grants = [
        Grant(
            "topic",
            t.name,
            "literal",
            ("Read", "Write", "Describe") if t.name in consumed else ("Read", "Describe"),
        )
        for t in all_topics(1)
    ]
    grants += [
        Grant("group", consumer_group(s), "literal", ("Read", "Describe"))
        for s in SUBSCRIPTIONS
        if s != FEED_WRITER
    ]
    grants.append(Grant("group", REDRIVE_ID, "literal", ("Read", "Describe")))
    grants.append(Grant("transactionalId", REDRIVE_ID, "literal", ("Write", "Describe")))
    grants.append(IDEMPOTENT_PRODUCER)
    return grants


def _spoke_grants(region: Region) -> list[Grant]:
    """On a spoke's broker it reads its region's feed; on the hub's it writes its
    acknowledgements, and nothing else. It reads in no group."""
    grants = [Grant("topic", feed_topic(region), "literal", ("Read", "Describe"))]
    grants += [Grant("topic", topic_name(m), "literal", ("Write", "Describe")) for m in EMITS[SPOKE]]
    grants.append(IDEMPOTENT_PRODUCER)
    return grants


def grants_of(principal: str) -> list[Grant]:
    """Everything ``principal`` may do; nothing else is allowed (super users may do all)."""
    if principal in SUBSCRIPTIONS:
        return sorted(_service_grants(principal))
    if principal in SPOKE_PRINCIPALS:
        return sorted(_spoke_grants(Region(principal.removeprefix(f"{SPOKE}-"))))
    if principal == OPERATOR:
        return sorted(_operator_grants())
    if principal == FINANCE:
        return sorted(
            [
                Grant("topic", topic_name(RefundCalculated), "literal", ("Write", "Describe")),
                IDEMPOTENT_PRODUCER,
            ]
        )
    if principal in SUPER_USERS:
        return []
    raise ValueError(f"unknown principal {principal!r}; known: {', '.join(CLIENT_PRINCIPALS)}")
