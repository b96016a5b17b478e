"""Planning a replay: where a service's consumer group should restart on each partition.

A replay moves a stopped service's committed offsets back (or forward) so that it
re-consumes its topics. Effects are idempotent upserts and output ids are derived from
input ids, so re-consuming converges instead of double counting (design.md section 4).
This module only decides the new offsets from what the broker reported; ``commands``
fetches those facts and commits the plan.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from shared.events import COPENHAGEN
from shared.topics import FEED_WRITER, SUBSCRIPTIONS, topic_name

Partition = tuple[str, int]

#: Operators in Copenhagen write local times; an ISO time without an offset means theirs.
LOCAL_ZONE = COPENHAGEN


class ReplayError(ValueError):
    """A replay that cannot be planned as asked; the message tells the operator why."""


def consumed_topics(service: str, committed_topics: Sequence[str], event_topics: Sequence[str]) -> list[str]:
    """The topics a replay of ``service`` resets.

    The static map says what the code consumes; the group's committed offsets add any event
    topic it has consumed besides (e.g. after a change of wiring). Any other topic the group
    has offsets on (the internal topics of an older consumer library) is no event topic and
    is left alone.
    """
    if service not in SUBSCRIPTIONS:
        raise ReplayError(f"unknown service {service!r}; one of {', '.join(SUBSCRIPTIONS)}")
    if service == FEED_WRITER:
        raise ReplayError(
            f"{service} reads its subscriptions whole at every start, in no consumer group: restarting it "
            "is its replay"
        )
    topics = {topic_name(m) for m in SUBSCRIPTIONS[service]}
    topics |= {t for t in committed_topics if t in set(event_topics)}
    if not topics:
        raise ReplayError(
            f"{service} consumes no topic (it receives uploads over HTTP and only emits); "
            "there is nothing to replay"
        )
    return sorted(topics)


def live_members_refusal(group: str, state: str, members: Sequence[tuple[str, str]]) -> str | None:
    """Why the group cannot be reset now, or None when it is safe.

    A running consumer would overwrite the new offsets with its next commit, and the broker
    rejects an outside commit to a group with members anyway; so a replay needs the service
    stopped. ``members`` are (client id, host) pairs; a service's consumer shows up as an
    ordinary member of a classic group in state Stable (or rebalancing while it joins).
    """
    if not members and state in ("Empty", "Dead", ""):
        return None
    who = ", ".join(f"{client} at {host}" for client, host in members) or "none listed"
    return (
        f"consumer group {group} has {len(members)} live member(s) (state {state}: {who}); "
        "stop the service and run the replay again"
    )


def parse_time(text: str) -> datetime:
    """An ISO-8601 time; one without an offset is read as Copenhagen local time."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ReplayError(
            f"--to-time {text!r} is not an ISO-8601 time (e.g. 2026-01-15T10:00+01:00)"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=LOCAL_ZONE)
    return moment


@dataclass(frozen=True)
class OffsetSpec:
    """One ``[topic:]partition:offset`` of ``--to-offset``."""

    topic: str | None
    partition: int
    offset: int


def parse_offset_specs(values: Sequence[str]) -> list[OffsetSpec]:
    """``0:15 1:20`` or, for a service with several topics, ``genomhub.validated.v1:0:15``."""
    specs: list[OffsetSpec] = []
    for value in values:
        topic, _, rest = value.rpartition(":")
        topic, _, partition = topic.rpartition(":")
        try:
            spec = OffsetSpec(topic or None, int(partition), int(rest))
        except ValueError:
            raise ReplayError(
                f"--to-offset {value!r} is not PARTITION:OFFSET or TOPIC:PARTITION:OFFSET"
            ) from None
        if spec.partition < 0 or spec.offset < 0:
            raise ReplayError(f"--to-offset {value!r}: partition and offset must not be negative")
        specs.append(spec)
    if not specs:
        raise ReplayError("--to-offset needs at least one PARTITION:OFFSET")
    return specs


@dataclass(frozen=True)
class Earliest:
    """The oldest record still in each partition (the whole retained log)."""


@dataclass(frozen=True)
class AtTime:
    """The first record written at or after ``moment``."""

    moment: datetime

    @property
    def millis(self) -> int:
        return int(self.moment.timestamp() * 1000)


@dataclass(frozen=True)
class AtOffsets:
    """Named offsets on named partitions; other partitions keep their committed offset."""

    specs: tuple[OffsetSpec, ...]


Target = Earliest | AtTime | AtOffsets


@dataclass(frozen=True)
class Reset:
    """One partition's row of a replay plan; ``new`` None means left as it is."""

    topic: str
    partition: int
    current: int | None
    new: int | None

    @property
    def changes(self) -> bool:
        return self.new is not None and self.new != self.current


def plan(
    target: Target,
    partitions: Sequence[Partition],
    committed: Mapping[Partition, int],
    earliest: Mapping[Partition, int],
    latest: Mapping[Partition, int],
    by_time: Mapping[Partition, int | None] | None = None,
) -> list[Reset]:
    """The new offset of each partition.

    ``committed`` holds the group's committed offsets (absent: never committed);
    ``earliest``/``latest`` the log start and end; ``by_time`` the answer of
    offsets_for_times (None where no record is that recent, which means the end: a replay
    from a future time replays nothing).
    """
    parts = sorted(partitions)
    rows: list[Reset] = []
    if isinstance(target, AtOffsets):
        wanted = _resolve_specs(target.specs, parts)
        for tp in parts:
            new = wanted.get(tp)
            if new is not None and not earliest[tp] <= new <= latest[tp]:
                raise ReplayError(
                    f"offset {new} is outside {tp[0]} partition {tp[1]}, "
                    f"which holds offsets {earliest[tp]} to {latest[tp]} (end)"
                )
            rows.append(Reset(tp[0], tp[1], committed.get(tp), new))
        return rows
    for tp in parts:
        if isinstance(target, Earliest):
            new = earliest[tp]
        else:
            if by_time is None:
                raise ValueError("a replay to a time needs the offsets for that time")
            found = by_time.get(tp)
            new = latest[tp] if found is None else found
        rows.append(Reset(tp[0], tp[1], committed.get(tp), new))
    return rows


def _resolve_specs(specs: Sequence[OffsetSpec], parts: Sequence[Partition]) -> dict[Partition, int]:
    topics = sorted({t for t, _ in parts})
    wanted: dict[Partition, int] = {}
    for spec in specs:
        if spec.topic is None:
            if len(topics) != 1:
                raise ReplayError(
                    f"the service consumes {len(topics)} topics ({', '.join(topics)}); "
                    "name the topic: --to-offset TOPIC:PARTITION:OFFSET"
                )
            topic = topics[0]
        elif spec.topic in topics:
            topic = spec.topic
        else:
            raise ReplayError(f"the service does not consume {spec.topic}; it consumes {', '.join(topics)}")
        tp = (topic, spec.partition)
        if tp not in parts:
            count = sum(1 for t, _ in parts if t == topic)
            raise ReplayError(f"{topic} has no partition {spec.partition} (it has {count})")
        if tp in wanted:
            raise ReplayError(f"{topic} partition {spec.partition} is named twice")
        wanted[tp] = spec.offset
    return wanted


def plan_rows(rows: Sequence[Reset]) -> list[tuple[str, int, int | None, int | None, str]]:
    """Table rows: topic, partition, current, new, and what the change means."""
    out: list[tuple[str, int, int | None, int | None, str]] = []
    for row in rows:
        if row.new is None:
            note = "unchanged"
        elif row.current is None:
            note = "first commit"
        elif row.new < row.current:
            note = f"replays {row.current - row.new}"
        elif row.new > row.current:
            note = f"skips {row.new - row.current}"
        else:
            note = "same"
        out.append((row.topic, row.partition, row.current, row.new, note))
    return out
