"""The shared bus against the real broker: envelope, trace context, DLQ, commit order."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from opentelemetry import trace

from shared import telemetry
from shared.bus import publish
from shared.envelope import decode, encode, normalise_headers
from shared.events import FileReceived, new_submission_id
from shared.topics import dlq_name, topic_name
from tests.support import Process, free_port, kafka, python, records, wait_for

TOPIC = topic_name(FileReceived)


def make_event(submission_id: str) -> FileReceived:
    return FileReceived.model_validate(
        {
            "submission": {
                "submission_id": submission_id,
                "region": "hovedstaden",
                "department": "Rigshospitalet",
                "sample_id": f"S-{submission_id}",
                "patient_id": "P-0001",
                "analysis_type": "WGS",
                "platform": "ILLUMINA",
                "received_at": datetime(2026, 1, 15, 10, tzinfo=UTC),
            },
            "files": [
                {
                    "name": "R1.fastq.gz",
                    "role": "raw_reads",
                    "url": "file:///archive/R1.fastq.gz",
                    "size": 10,
                    "sha256": "0" * 64,
                    "md5": "0" * 32,
                }
            ],
        }
    )


def probe(tmp_path: Path, name: str, replica: str = "", *extra: str) -> tuple[Process, Path, int]:
    """A probe process of group ``name``; ``replica`` tells the files of one of several apart."""
    effects = tmp_path / f"{name}{replica}.effects"
    port = free_port()
    proc = Process(
        python("tests/integration/probe_service.py", name, str(effects), str(port), *extra),
        tmp_path / f"{name}{replica}.log",
    )
    return proc, effects, port


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_envelope_round_trip_keeps_headers(kafka_bootstrap: str) -> None:
    sid = new_submission_id()
    event = make_event(sid)
    asyncio.run(publish([(event, f"id-{sid}")], "/genomhub/test", principal="receiver"))
    found = [r for r in records(kafka_bootstrap, TOPIC) if r.key == event.key().encode()]
    assert len(found) == 1
    headers = normalise_headers(found[0].headers)
    names = dict(headers)
    assert names["ce_specversion"] == b"1.0"
    assert names["ce_id"] == f"id-{sid}".encode()
    assert names["ce_type"] == b"dk.ngc.genomhub.file-received.v1"
    assert names["ce_subject"] == sid.encode()
    assert names["content-type"] == b"application/json"
    envelope = decode(headers, found[0].value, FileReceived)
    assert envelope.data == event
    assert envelope.id == f"id-{sid}"


def test_trace_context_carries_across_produce_and_consume(kafka_bootstrap: str, tmp_path: Path) -> None:
    telemetry.setup("test")
    proc, effects, port = probe(tmp_path, "probe-trace")
    sid = new_submission_id()
    with telemetry.tracer("test").start_as_current_span("upload"):
        trace_id = format(trace.get_current_span().get_span_context().trace_id, "032x")
        asyncio.run(publish([(make_event(sid), f"id-{sid}")], "/genomhub/test", principal="receiver"))
    proc.start()
    try:
        proc.wait_http(port)
        line = wait_for(lambda: [x for x in lines(effects) if x.startswith(sid)], what="the probe's effect")[
            0
        ]
    finally:
        proc.stop()
    assert line.split()[2] == trace_id


async def send_raw(bootstrap: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
    producer = kafka("receiver", bootstrap).producer()
    await producer.start()
    try:
        await producer.send_and_wait(TOPIC, value, key=key, headers=headers)
    finally:
        await producer.stop()


def test_malformed_messages_go_to_the_dlq_and_the_consumer_goes_on(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    sid = new_submission_id()
    good = make_event(sid)
    key = good.key().encode()
    headers, value = encode(good, event_id=f"id-{sid}", source="/genomhub/test")
    unknown = [(k, b"dk.ngc.genomhub.unheard-of.v1" if k == "ce_type" else v) for k, v in headers]
    bad = [
        (b"{not json", headers, "not_json"),
        (b'{"submission": {"submission_id": "x"}}', headers, "schema"),
        (value, unknown, "unknown_type"),
    ]
    for raw, hdrs, _ in bad:
        asyncio.run(send_raw(kafka_bootstrap, key, raw, hdrs))
    asyncio.run(send_raw(kafka_bootstrap, key, value, headers))

    proc, effects, port = probe(tmp_path, "probe-dlq")
    proc.start()
    try:
        proc.wait_http(port)
        wait_for(lambda: [x for x in lines(effects) if x.startswith(sid)], what="the good message")
        dead = wait_for(
            lambda: (
                [
                    r
                    for r in records(kafka_bootstrap, dlq_name(TOPIC))
                    if r.key == key
                    and dict(normalise_headers(r.headers)).get("genomhub_dlq_service") == b"probe-dlq"
                ]
                if len([r for r in records(kafka_bootstrap, dlq_name(TOPIC)) if r.key == key]) >= 3
                else None
            ),
            what="three dead letters",
        )
    finally:
        proc.stop()
    codes = sorted(dict(normalise_headers(r.headers))["genomhub_dlq_code"].decode() for r in dead)
    assert codes == sorted(code for _, _, code in bad)
    for record in dead:
        h = dict(normalise_headers(record.headers))
        assert h["genomhub_dlq_error"]
        assert h["genomhub_dlq_topic"] == TOPIC.encode()
        assert "ce_id" in h  # the original headers travel with the dead letter
    assert {r.value for r in dead} == {raw for raw, _, _ in bad}


def test_offset_is_committed_only_after_the_effect(kafka_bootstrap: str, tmp_path: Path) -> None:
    proc, effects, _ = probe(tmp_path, "probe-crash")
    effects.with_suffix(".crash").touch()
    sid = new_submission_id()
    asyncio.run(publish([(make_event(sid), f"id-{sid}")], "/genomhub/test", principal="receiver"))
    proc.start()
    assert proc.wait_exit(90) == 17, proc.tail()
    assert not [x for x in lines(effects) if x.startswith(sid)]

    again, _, again_port = probe(tmp_path, "probe-crash")
    again.start()
    try:
        again.wait_http(again_port)
        wait_for(lambda: [x for x in lines(effects) if x.startswith(sid)], what="redelivery after the crash")
    finally:
        again.stop()


@pytest.mark.parametrize("model", [FileReceived])
def test_topic_names(model: type[FileReceived]) -> None:
    assert topic_name(model) == "genomhub.file-received.v1"
    assert dlq_name(topic_name(model)) == "genomhub.file-received.v1.dlq"


def test_replicas_share_partitions_and_a_rebalance_loses_and_doubles_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Two processes of one service (one consumer group) through ``shared.bus.Service``: a
    second joins mid-stream and the first leaves mid-stream (SIGTERM, as Kubernetes stops a
    pod), each time with a record in the middle of its handling. Every record is handled,
    and none twice: a partition changes hands only after its handled records are committed,
    and a record being handled is finished (its effect made and committed) first."""
    name = f"probe-shared-{new_submission_id()[:8]}"  # a group of its own
    # 30 ms a record: a rebalance or a stop finds one in the middle of its handling
    first, first_effects, first_port = probe(tmp_path, name, "-1", "0.03")
    second, second_effects, second_port = probe(tmp_path, name, "-2", "0.03")
    sent: list[str] = []

    def send(count: int) -> None:
        ids = [new_submission_id() for _ in range(count)]
        events = [(make_event(sid), f"id-{sid}") for sid in ids]
        asyncio.run(publish(events, "/genomhub/test", principal="receiver"))
        sent.extend(ids)

    def handled() -> list[str]:
        return [line.split()[0] for line in lines(first_effects) + lines(second_effects)]

    first.start()
    try:
        first.wait_http(first_port)
        send(100)
        wait_for(lambda: len(lines(first_effects)) >= 20, what="the first replica to be handling")
        second.start()  # joins the group mid-stream: a rebalance
        second.wait_http(second_port)
        send(100)
        wait_for(lambda: lines(second_effects), what="the second replica to get partitions")
        send(50)
        first.stop()  # leaves mid-stream: its partitions move to the second
        send(50)
        wait_for(lambda: set(sent) <= set(handled()), timeout=120, what="every record to be handled")
        time.sleep(3)  # anything delivered twice would arrive by now
    finally:
        first.stop()
        second.stop()
    effects = Counter(handled())
    doubled = {sid: n for sid, n in effects.items() if n > 1}
    assert set(sent) <= set(effects) and len(sent) == 300  # the topic may hold earlier tests' too
    assert lines(first_effects) and lines(second_effects), "both replicas handled records"
    assert not doubled, f"{len(doubled)} records handled twice"
