"""``genomhub replay`` against the real broker: dry run, resets, and the refusal while a
consumer of the service's group is alive."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiokafka import TopicPartition
from click.testing import CliRunner, Result

from services.cli import main
from services.operations.commands import _commit_offsets
from services.operations.replay import ReplayError
from shared.bus import publish
from shared.events import FileReceived, new_submission_id
from shared.topics import topic_name
from tests.integration.operations.kafka_groups import Offsets, bounds, committed
from tests.integration.test_bus import make_event
from tests.support import Process, free_port, genomhub, kafka, python, records, wait_for

TOPIC = topic_name(FileReceived)
GROUP = "genomhub-validator"
Park = Callable[[str, Sequence[str]], Offsets]


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def publish_batch(count: int) -> list[str]:
    sids = [new_submission_id() for _ in range(count)]
    asyncio.run(
        publish([(make_event(s), f"id-{s}") for s in sids], "/genomhub/test-replay", principal="receiver")
    )
    return sids


def table(output: str) -> dict[int, tuple[str, str]]:
    """partition -> (current, new) from the printed plan."""
    rows: dict[int, tuple[str, str]] = {}
    for line in output.splitlines():
        cells = line.split()
        if cells and cells[0] == TOPIC:
            rows[int(cells[1])] = (cells[2], cells[3])
    return rows


def test_dry_run_then_reset_to_earliest(kafka_bootstrap: str, park: Park) -> None:
    publish_batch(6)
    ends = park(GROUP, [TOPIC])
    starts = bounds(kafka_bootstrap, [TOPIC])[0]

    dry = cli("replay", "--service", "validator", "--to-earliest", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "dry run: nothing committed" in dry.output
    assert table(dry.output) == {p: (str(ends[(TOPIC, p)]), str(starts[(TOPIC, p)])) for t, p in ends}
    assert committed(kafka_bootstrap, GROUP) == ends

    real = cli("replay", "--service", "validator", "--to-earliest")
    assert real.exit_code == 0, real.output
    assert "committed 3 offset(s) for genomhub-validator" in real.output
    assert committed(kafka_bootstrap, GROUP) == starts


def test_reset_to_a_time_given_in_copenhagen_time(kafka_bootstrap: str, park: Park) -> None:
    park(GROUP, [TOPIC])
    publish_batch(6)
    time.sleep(0.05)  # record timestamps are milliseconds: keep the batches apart
    moment = datetime.now(UTC)
    time.sleep(0.05)
    later = set(publish_batch(6))
    ends = bounds(kafka_bootstrap, [TOPIC])[1]
    first_later: dict[tuple[str, int], int] = {}
    for record in records(kafka_bootstrap, TOPIC):
        if record.value and any(s.encode() in record.value for s in later):
            tp = (record.topic, record.partition)
            first_later[tp] = min(first_later.get(tp, record.offset), record.offset)
    expected = {tp: first_later.get(tp, ends[tp]) for tp in ends}

    local = moment.astimezone(ZoneInfo("Europe/Copenhagen")).replace(tzinfo=None).isoformat()
    result = cli("replay", "--service", "validator", "--to-time", local)
    assert result.exit_code == 0, result.output
    assert committed(kafka_bootstrap, GROUP) == expected
    # a time after every record: the end of each partition, nothing replayed
    future = cli("replay", "--service", "validator", "--to-time", "2999-01-01T00:00:00+00:00")
    assert future.exit_code == 0, future.output
    assert committed(kafka_bootstrap, GROUP) == ends


def test_reset_named_partitions_to_offsets(kafka_bootstrap: str, park: Park) -> None:
    publish_batch(6)
    ends = park(GROUP, [TOPIC])
    target = {0: ends[(TOPIC, 0)] - 1, 1: ends[(TOPIC, 1)] - 1}
    result = cli("replay", "--service", "validator", "--to-offset", f"0:{target[0]}", f"1:{target[1]}")
    assert result.exit_code == 0, result.output
    assert "unchanged" in result.output
    assert committed(kafka_bootstrap, GROUP) == {
        (TOPIC, 0): target[0],
        (TOPIC, 1): target[1],
        (TOPIC, 2): ends[(TOPIC, 2)],
    }
    beyond = cli("replay", "--service", "validator", "--to-offset", f"2:{ends[(TOPIC, 2)] + 5}")
    assert beyond.exit_code != 0
    assert "outside genomhub.file-received.v1 partition 2" in beyond.output
    receiver = cli("replay", "--service", "receiver", "--to-earliest")
    assert receiver.exit_code != 0 and "receiver consumes no topic" in receiver.output


def group_state(bootstrap: str) -> str:
    async def describe() -> str:
        admin = kafka("operator", bootstrap).admin()
        await admin.start()
        try:
            (response,) = await admin.describe_consumer_groups([GROUP])
        finally:
            await admin.close()
        return str(response.groups[0][2])

    return asyncio.run(describe())


def validator_worker(tmp_path: Path, effects: Path) -> tuple[Process, int]:
    """The probe service as a consumer in the validator's group (it consumes file-received)."""
    port = free_port()
    args = python("tests/integration/probe_service.py", "validator", str(effects), str(port))
    return Process(args, tmp_path / "validator.log").start(), port


def test_refuses_while_a_consumer_is_live_and_the_consumer_replays_after(
    kafka_bootstrap: str, park: Park, tmp_path: Path
) -> None:
    moment = datetime.now(UTC)
    time.sleep(0.05)
    sids = publish_batch(3)
    ends = park(GROUP, [TOPIC])  # the worker starts past these: they were handled before
    effects = tmp_path / "effects"
    worker, port = validator_worker(tmp_path, effects)
    try:
        worker.wait_http(port)
        wait_for(lambda: group_state(kafka_bootstrap) == "Stable", what="the worker to join its group")
        refused = subprocess.run(
            genomhub("replay", "--service", "validator", "--to-time", moment.isoformat()),
            capture_output=True,
            text=True,
        )
        assert refused.returncode != 0
        assert "refusing to replay: consumer group genomhub-validator has 1 live member(s)" in refused.stderr
        assert "stop the service" in refused.stderr
        dry = cli("replay", "--service", "validator", "--to-earliest", "--dry-run")
        assert dry.exit_code == 0 and "a real run would refuse now" in dry.output
        assert committed(kafka_bootstrap, GROUP) == ends
        # the second guard: a commit that slips past the check is rejected by the broker
        with pytest.raises(ReplayError, match="the broker rejected the new offsets"):
            asyncio.run(
                _commit_offsets(kafka("operator", kafka_bootstrap), GROUP, {TopicPartition(TOPIC, 0): 0})
            )
        assert committed(kafka_bootstrap, GROUP) == ends
    finally:
        worker.stop()
    assert not effects.exists() or not any(s in effects.read_text() for s in sids)

    wait_for(lambda: group_state(kafka_bootstrap) in ("Empty", "Dead"), what="the group to empty")
    allowed = cli("replay", "--service", "validator", "--to-time", moment.isoformat())
    assert allowed.exit_code == 0, allowed.output
    assert committed(kafka_bootstrap, GROUP) != ends

    worker, port = validator_worker(tmp_path, effects)
    try:
        worker.wait_http(port)
        wait_for(
            lambda: effects.exists() and all(s in effects.read_text() for s in sids),
            what="the restarted worker to consume the replayed events",
        )
    finally:
        worker.stop()


def test_replay_on_a_fresh_broker_waits_for_the_group_coordinator(tmp_path: Path) -> None:
    """On a broker that has never been asked about a group, ``__consumer_offsets`` does not exist
    yet and the broker answers the first group question with GroupCoordinatorNotAvailable while
    it creates it: the operator's first replay on a new stack waits for the coordinator instead
    of failing."""
    from shared.config import StateSettings, TopicSettings
    from tools.kafka.broker import LocalBroker

    broker = LocalBroker(tmp_path, StateSettings().cache, TopicSettings().partitions)
    state, _took = broker.start()
    try:
        env = {**os.environ, "GENOMHUB_HOME": str(tmp_path), "GENOMHUB_KAFKA_BOOTSTRAP": state.bootstrap}
        dry = subprocess.run(
            genomhub("replay", "--service", "indexer", "--to-earliest", "--dry-run"),
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        broker.stop()
    assert dry.returncode == 0, dry.stderr
    assert "dry run: nothing committed" in dry.stdout
    assert "first commit" in dry.stdout
