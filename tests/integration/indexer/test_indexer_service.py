"""The indexer as a real process on the real broker: index, announce, dead-letter, replay.

The replay check is the operator's procedure: stop the indexer, drop its database, reset
its consumer group to the earliest offsets (``genomhub replay``), start it again, and
compare normalised dumps of the catalogue (``genomhub catalogue dump``).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka.errors import KafkaError
from opentelemetry import trace
from opentelemetry.context import Context

from shared import telemetry
from shared.auth import token_hash
from shared.bus import partitions_of, publish
from shared.envelope import encode, normalise_headers
from shared.events import Harmonised, Indexed, SubmissionEvent, Validated, sample_key
from shared.topics import consumer_group, dlq_name, emitter_of, topic_name
from tests.support import ROOT, Process, free_port, genomhub, kafka, records, wait_for
from tests.unit.indexer.factories import harmonised, submission, validated

TOKEN = "indexer-test-national-token"
GROUP = consumer_group("indexer")
CONSUMED = (topic_name(Validated), topic_name(Harmonised))


async def _lag(bootstrap: str) -> int:
    """Records on the indexer's topics that its group has not committed yet."""
    admin = kafka(bootstrap=bootstrap).admin()
    consumer = kafka(bootstrap=bootstrap).consumer()
    await admin.start()
    await consumer.start()
    try:
        parts = [tp for topic in CONSUMED for tp in await partitions_of(kafka(bootstrap=bootstrap), topic)]
        ends = await consumer.end_offsets(parts)
        committed = await admin.list_consumer_group_offsets(GROUP, partitions=parts)
        return sum(ends[tp] - max(committed[tp].offset, 0) if tp in committed else ends[tp] for tp in parts)
    finally:
        await consumer.stop()
        await admin.close()


def caught_up(bootstrap: str) -> bool:
    try:
        return asyncio.run(_lag(bootstrap)) == 0
    except KafkaError:  # e.g. the group coordinator is still being elected
        return False


def run(*args: str, env: dict[str, str]) -> str:
    import os

    done = subprocess.run(
        genomhub(*args), capture_output=True, text=True, env={**os.environ, **env}, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


def http_get(port: int, path: str) -> Any:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    request.add_header("Authorization", f"Bearer {TOKEN}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


async def _send_raw(
    bootstrap: str, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]
) -> None:
    producer = kafka("harmoniser" if topic == topic_name(Harmonised) else "validator", bootstrap).producer()
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


TRACES: dict[str, Context] = {}


def traced_publish(items: list[tuple[SubmissionEvent, str]]) -> dict[str, str]:
    """Publish each event in a span of its submission's trace (one trace per submission, as
    upstream does); returns each submission id's trace id."""
    tracer = telemetry.tracer("indexer-test")
    for event, event_id in items:
        sid = event.submission.submission_id
        if sid not in TRACES:
            with tracer.start_as_current_span("upload") as root:
                TRACES[sid] = trace.set_span_in_context(root)
        with tracer.start_as_current_span("upstream", context=TRACES[sid]):
            asyncio.run(
                publish([(event, event_id)], "/genomhub/test-upstream", principal=emitter_of(type(event)))
            )
    return {
        sid: format(trace.get_current_span(ctx).get_span_context().trace_id, "032x")
        for sid, ctx in TRACES.items()
    }


def indexed_records(bootstrap: str, keys: set[bytes]) -> list[Any]:
    return [r for r in records(bootstrap, topic_name(Indexed)) if r.key in keys]


def test_indexer_indexes_announces_dead_letters_and_replays_identically(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    telemetry.setup("indexer-test")
    run_id = uuid.uuid4().hex[:8]
    t0 = datetime(2026, 1, 20, 9, tzinfo=UTC)
    subs = [
        submission(n, sample=f"S-{run_id}-{n}", received_at=t0 + timedelta(hours=n), region=region)
        for n, region in enumerate(["hovedstaden", "sjaelland", "syddanmark", "midtjylland"], start=1)
    ]
    from tests.ids import issued_id

    subs = [s.model_copy(update={"submission_id": issued_id(f"{run_id}-{s.submission_id}")}) for s in subs]
    ids = {name: f"{run_id}-{name}" for name in ("rej", "acc3", "harm1", "fail2", "harm3", "acc4")}
    items: list[tuple[SubmissionEvent, str]] = [
        (validated(subs[0], "rejected"), ids["rej"]),
        (harmonised(subs[2]), ids["harm3"]),  # harmonised before its QC event: out of order
        (validated(subs[2], "accepted"), ids["acc3"]),
        (harmonised(subs[1], "failed"), ids["fail2"]),
        (validated(subs[3], "accepted"), ids["acc4"]),  # QC passed, not yet harmonised: no sample
        (harmonised(subs[2]), ids["harm3"]),  # the same event again
    ]
    traces = traced_publish(items)
    # A record that is not JSON, on a topic the indexer consumes: it must reach the DLQ.
    headers, _ = encode(validated(subs[0], "rejected"), event_id=f"{run_id}-bad", source="/genomhub/test")
    asyncio.run(
        _send_raw(kafka_bootstrap, topic_name(Validated), f"S-{run_id}-bad".encode(), b"{oops", headers)
    )

    port = free_port()
    env = {
        "GENOMHUB_INDEXER_DATABASE_URL": f"sqlite:///{tmp_path / 'catalogue.sqlite'}",
        "GENOMHUB_INDEXER_PORT": str(port),
        "GENOMHUB_TOKENS": json.dumps({token_hash(TOKEN): "ngc"}),
    }
    indexer = Process(genomhub("run", "indexer"), tmp_path / "indexer.log", env)
    indexer.start()
    try:
        indexer.wait_http(port, "/readyz", timeout=90)
        wait_for(lambda: caught_up(kafka_bootstrap), timeout=120, what="the indexer to consume everything")
        listed = http_get(port, f"/v1/samples?q={run_id}&limit=50")
        third = http_get(port, f"/v1/submissions/{subs[2].submission_id}")
    finally:
        indexer.stop()

    by_sample = {s["sample_id"]: s for s in listed["items"]}
    assert {k: v["status"] for k, v in by_sample.items()} == {
        subs[0].sample_id: "rejected",
        subs[1].sample_id: "harmonisation_failed",
        subs[2].sample_id: "harmonised",
    }
    third_trace = traces[subs[2].submission_id]
    assert by_sample[subs[2].sample_id]["trace_id"] == third_trace
    assert {(t["event_id"], t["trace_id"]) for t in third["timeline"]} == {
        (ids["harm3"], third_trace),
        (ids["acc3"], third_trace),
    }
    assert {t["type"] for t in third["timeline"]} == {"validated", "harmonised"}

    keys = {sample_key(s.region, s.sample_id).encode() for s in subs}
    announced = indexed_records(kafka_bootstrap, keys)
    first_ids = {dict(normalise_headers(r.headers))["ce_id"] for r in announced}
    assert len(first_ids) == 3, "one indexed event per outcome event (harmonised twice: one id)"
    for record in announced:
        h = dict(normalise_headers(record.headers))
        data = json.loads(record.value)
        sid = data["submission"]["submission_id"]
        assert h["traceparent"].decode().split("-")[1] == traces[sid], "the trace goes on through the indexer"
        assert record.key.decode() == f"{data['submission']['region']}/{data['submission']['sample_id']}"
        assert data["accepted"] is (record.key.decode() != sample_key(subs[0].region, subs[0].sample_id))
    dead = [
        r
        for r in records(kafka_bootstrap, dlq_name(topic_name(Validated)))
        if r.key == f"S-{run_id}-bad".encode()
    ]
    assert len(dead) == 1
    assert dict(normalise_headers(dead[0].headers))["genomhub_dlq_service"] == b"indexer"

    before = json.loads(run("catalogue", "dump", env=env))
    search = json.loads(run("catalogue", "search", "--q", run_id, "--status", "rejected", "--json", env=env))
    assert [s["sample_id"] for s in search["items"]] == [subs[0].sample_id]

    # Drop the database, rewind the consumer group, replay.
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"catalogue.sqlite{suffix}").unlink(missing_ok=True)
    wait_for(lambda: _replay_accepted(env), timeout=60, what="the group to empty and accept the rewind")
    assert not caught_up(kafka_bootstrap)
    again = Process(genomhub("run", "indexer"), tmp_path / "indexer-replay.log", env)
    again.start()
    try:
        again.wait_http(port, "/readyz", timeout=90)
        wait_for(lambda: caught_up(kafka_bootstrap), timeout=120, what="the replay to finish")
        after = json.loads(run("catalogue", "dump", env=env))
        # The same event once more, on the live service: nothing changes.
        traced_publish([(harmonised(subs[2]), ids["harm3"])])
        wait_for(lambda: caught_up(kafka_bootstrap), timeout=60, what="the duplicate")
        once_more = json.loads(run("catalogue", "dump", env=env))
    finally:
        again.stop()

    assert before["catalogue_samples"], "the catalogue is not empty"
    assert after == before
    assert once_more == before
    replayed_ids = {
        dict(normalise_headers(r.headers))["ce_id"] for r in indexed_records(kafka_bootstrap, keys)
    }
    assert replayed_ids == first_ids, "a replay re-announces under the same ids"


def _replay_accepted(env: dict[str, str]) -> bool:
    import os

    done = subprocess.run(
        genomhub("replay", "--service", "indexer", "--to-earliest"),
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=ROOT,
        timeout=120,
    )
    return done.returncode == 0
