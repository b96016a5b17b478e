"""Replay planning without a broker: topics, refusals, times, offsets and the table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.operations.replay import (
    AtOffsets,
    AtTime,
    Earliest,
    OffsetSpec,
    ReplayError,
    Reset,
    consumed_topics,
    live_members_refusal,
    parse_offset_specs,
    parse_time,
    plan,
    plan_rows,
)
from services.operations.table import format_table
from shared.topics import consumer_group

FR = "genomhub.file-received.v1"
VAL = "genomhub.validated.v1"
HAR = "genomhub.harmonised.v1"
EVENT_TOPICS = [FR, VAL, HAR, "genomhub.indexed.v1", "genomhub.refund-calculated.v1"]
PARTS = [(FR, 0), (FR, 1), (FR, 2)]
EARLIEST = {(FR, 0): 0, (FR, 1): 5, (FR, 2): 0}
LATEST = {(FR, 0): 10, (FR, 1): 20, (FR, 2): 0}


def test_group_is_the_service_s_consumer_group() -> None:
    assert consumer_group("validator") == "genomhub-validator"


def test_consumed_topics_from_the_map_and_the_committed_event_topics() -> None:
    # The indexer also follows the archive: where each file is and any recall under way.
    assert consumed_topics("indexer", [], EVENT_TOPICS) == [
        "genomhub.file-staged.v1",
        HAR,
        "genomhub.recall-updated.v1",
        "genomhub.tier-moved.v1",
        VAL,
    ]
    assert consumed_topics("validator", [FR, "genomhub-validator-__assignor-__leader"], EVENT_TOPICS) == [FR]
    assert consumed_topics("billing", [VAL], EVENT_TOPICS) == ["genomhub.indexed.v1", VAL]


def test_receiver_has_nothing_to_replay() -> None:
    with pytest.raises(ReplayError, match="receiver consumes no topic"):
        consumed_topics("receiver", [], EVENT_TOPICS)
    with pytest.raises(ReplayError, match="unknown service"):
        consumed_topics("finance", [], EVENT_TOPICS)


def test_refusal_while_members_are_live() -> None:
    assert live_members_refusal("g", "Empty", []) is None
    assert live_members_refusal("g", "Dead", []) is None
    refusal = live_members_refusal("genomhub-validator", "Stable", [("aiokafka-0.14.0", "/127.0.0.1")])
    assert refusal is not None
    assert "1 live member" in refusal and "aiokafka-0.14.0 at /127.0.0.1" in refusal
    assert "stop the service" in refusal
    # a group between members (rebalancing) is not safe either
    assert live_members_refusal("g", "PreparingRebalance", []) is not None


def test_times_are_aware_and_naive_means_copenhagen() -> None:
    winter = parse_time("2026-01-15T10:00:00")
    assert winter.utcoffset() == timedelta(hours=1)
    summer = parse_time("2026-07-15T10:00")
    assert summer.astimezone(UTC) == datetime(2026, 7, 15, 8, tzinfo=UTC)
    assert parse_time("2026-01-15T10:00Z") == datetime(2026, 1, 15, 10, tzinfo=UTC)
    assert AtTime(parse_time("1970-01-01T00:00:01Z")).millis == 1000
    with pytest.raises(ReplayError, match="not an ISO-8601 time"):
        parse_time("yesterday")


def test_offset_specs() -> None:
    assert parse_offset_specs(["0:15", "1:20"]) == [OffsetSpec(None, 0, 15), OffsetSpec(None, 1, 20)]
    assert parse_offset_specs([f"{VAL}:2:7"]) == [OffsetSpec(VAL, 2, 7)]
    for bad in ["15", "a:b", "0:-1", ":1"]:
        with pytest.raises(ReplayError):
            parse_offset_specs([bad])
    with pytest.raises(ReplayError, match="at least one"):
        parse_offset_specs([])


def test_plan_to_earliest() -> None:
    rows = plan(Earliest(), PARTS, {(FR, 0): 7, (FR, 1): 20}, EARLIEST, LATEST)
    assert rows == [Reset(FR, 0, 7, 0), Reset(FR, 1, 20, 5), Reset(FR, 2, None, 0)]
    assert [r[4] for r in plan_rows(rows)] == ["replays 7", "replays 15", "first commit"]


def test_plan_to_time_uses_the_end_where_nothing_is_that_recent() -> None:
    by_time: dict[tuple[str, int], int | None] = {(FR, 0): 4, (FR, 1): None, (FR, 2): None}
    rows = plan(AtTime(parse_time("2026-01-01T00:00Z")), PARTS, {(FR, 0): 7}, EARLIEST, LATEST, by_time)
    assert [(r.partition, r.new) for r in rows] == [(0, 4), (1, 20), (2, 0)]
    with pytest.raises(ValueError):
        plan(AtTime(parse_time("2026-01-01T00:00Z")), PARTS, {}, EARLIEST, LATEST)


def test_plan_to_offsets_leaves_other_partitions_alone() -> None:
    rows = plan(AtOffsets((OffsetSpec(None, 1, 6),)), PARTS, {(FR, 0): 7, (FR, 1): 9}, EARLIEST, LATEST)
    assert rows == [Reset(FR, 0, 7, None), Reset(FR, 1, 9, 6), Reset(FR, 2, None, None)]
    assert [r.changes for r in rows] == [False, True, False]
    assert plan_rows(rows)[0][4] == "unchanged"


def test_plan_to_offsets_rejects_what_the_log_does_not_hold() -> None:
    with pytest.raises(ReplayError, match=r"offset 3 is outside .* partition 1, which holds offsets 5 to 20"):
        plan(AtOffsets((OffsetSpec(None, 1, 3),)), PARTS, {}, EARLIEST, LATEST)
    with pytest.raises(ReplayError, match="has no partition 3"):
        plan(AtOffsets((OffsetSpec(None, 3, 0),)), PARTS, {}, EARLIEST, LATEST)
    with pytest.raises(ReplayError, match="named twice"):
        plan(AtOffsets((OffsetSpec(None, 0, 1), OffsetSpec(FR, 0, 2))), PARTS, {}, EARLIEST, LATEST)
    with pytest.raises(ReplayError, match=r"does not consume genomhub\.validated\.v1"):
        plan(AtOffsets((OffsetSpec(VAL, 0, 1),)), PARTS, {}, EARLIEST, LATEST)


def test_plan_to_offsets_needs_the_topic_when_there_are_two() -> None:
    parts = [(HAR, 0), (VAL, 0)]
    bounds = {(HAR, 0): 0, (VAL, 0): 0}
    ends = {(HAR, 0): 9, (VAL, 0): 9}
    with pytest.raises(ReplayError, match="name the topic"):
        plan(AtOffsets((OffsetSpec(None, 0, 1),)), parts, {}, bounds, ends)
    rows = plan(AtOffsets((OffsetSpec(VAL, 0, 3),)), parts, {}, bounds, ends)
    assert rows == [Reset(HAR, 0, None, None), Reset(VAL, 0, None, 3)]


def test_table_aligns_numbers_right_and_shows_missing_as_dash() -> None:
    text = format_table(
        ("topic", "partition", "current", "new"), [("a.long.topic", 0, 12, None), ("t", 10, None, 3)]
    )
    assert text.splitlines() == [
        "topic         partition  current  new",
        "------------  ---------  -------  ---",
        "a.long.topic          0       12    -",
        "t                    10        -    3",
    ]
    with pytest.raises(ValueError):
        format_table(("a", "b"), [(1,)])
