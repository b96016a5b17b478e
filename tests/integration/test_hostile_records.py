"""Hostile records on the real topics: a compromised producer writes what no service would.

Each record carries proper CloudEvents headers and JSON that fits the event's shape, but is
impossible (issue 12, items 2 and 3): a filesystem path as the submission id, a file outside
the archive, a billion genome equivalents, a receipt in 1900 or in 9999, CPR-like ids. The
real validator, harmoniser, indexer and billing consume them; each must land in the topic's DLQ with its
own code, and nothing may change: no folder removed, no file read, no job queued, no
catalogue row, no accrual. A good record sent after the hostile ones shows that the consumer went on.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata
from sqlalchemy import update

from services.billing.store import BillingStore
from services.harmoniser.jobs import JobStore
from services.harmoniser.jobs import jobs as job_table
from services.indexer.store import Catalogue
from shared.bus import end_offsets, partitions_of
from shared.config import ArchiveSettings, HarmoniserSettings, StateSettings
from shared.envelope import encode, normalise_headers
from shared.events import (
    SAMPLE_KEY_SEPARATOR,
    Event,
    FileReceived,
    Harmonised,
    Indexed,
    Region,
    ReharmonisationRequested,
    Validated,
)
from shared.topics import OPERATOR, SUBSCRIPTIONS, consumer_group, dlq_name, emitter_of, topic_name
from tests.ids import issued_id
from tests.support import Process, free_port, genomhub, kafka, records, wait_for
from tests.unit.billing.billing_factories import indexed
from tests.unit.indexer.factories import harmonised, submission, validated

Hostile = tuple[str, dict[str, Any], str]
"""(event id, the record's JSON data, the dead-letter code it must get)."""


async def write_as_compromised_service(
    bootstrap: str, model: type[Event], items: list[tuple[bytes, bytes, list[tuple[str, bytes]]]]
) -> None:
    """Produce raw records to ``model``'s topic with the credentials of the service that
    writes it: a compromised service, which the broker's ACLs let through to that topic."""
    producer = kafka(emitter_of(model), bootstrap).producer(acks="all")
    await producer.start()
    try:
        for key, value, headers in items:
            await producer.send_and_wait(topic_name(model), value, key=key, headers=headers)
    finally:
        await producer.stop()


async def _committed(bootstrap: str, service: str) -> dict[TopicPartition, int]:
    admin = kafka(OPERATOR, bootstrap).admin()
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(consumer_group(service))
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


async def _subscribed(bootstrap: str, service: str) -> list[TopicPartition]:
    operator = kafka(OPERATOR, bootstrap)
    return [tp for model in SUBSCRIPTIONS[service] for tp in await partitions_of(operator, topic_name(model))]


async def _ends(bootstrap: str, service: str) -> dict[TopicPartition, int]:
    return await end_offsets(kafka(OPERATOR, bootstrap), await _subscribed(bootstrap, service))


async def _commit(bootstrap: str, service: str, offsets: dict[TopicPartition, int]) -> None:
    operator = kafka(OPERATOR, bootstrap)
    parts = await _subscribed(bootstrap, service)
    consumer = operator.consumer(group_id=consumer_group(service), enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(parts)
        await consumer.commit({tp: OffsetAndMetadata(offsets.get(tp, 0), "") for tp in parts})
    finally:
        await consumer.stop()


class GroupPosition:
    """A service's consumer group put back where it was, so the suites that share the broker
    and compare a replay with a first run see the topics as if this suite had not run."""

    def __init__(self, bootstrap: str, service: str) -> None:
        self.bootstrap, self.service = bootstrap, service
        self.before: dict[TopicPartition, int] = {}

        def read() -> bool:
            try:
                self.before = asyncio.run(_committed(bootstrap, service))
            except KafkaError:  # a new broker elects its group coordinator first
                return False
            return True

        wait_for(read, timeout=60, what=f"the {service} group's offsets")

    def restore(self) -> None:
        def put_back() -> bool:
            try:
                asyncio.run(_commit(self.bootstrap, self.service, self.before))
            except KafkaError:  # the stopped service's membership has not expired yet
                return False
            return True

        wait_for(put_back, timeout=60, what=f"the {self.service} group to take back its offsets")

    def skip_to_end(self) -> None:
        """Start the group after everything its topics hold now, so a service started next sees
        only what the test sends, not what other suites left on the shared broker."""
        asyncio.run(_commit(self.bootstrap, self.service, asyncio.run(_ends(self.bootstrap, self.service))))


@contextmanager
def consuming(
    service: str,
    bootstrap: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    env: dict[str, str] | None = None,
    ready: str = "/healthz",
    timeout: float = 60,
) -> Iterator[None]:
    """The real ``service`` consuming with its own group until the block ends, once it answers
    on ``ready``; the group is put back when the test ends (``GroupPosition``), so the hostile
    records leave the suites that share the broker as they found it."""
    position = GroupPosition(bootstrap, service)
    request.addfinalizer(position.restore)
    port = free_port()
    env = {**(env or {}), f"GENOMHUB_{service.upper()}_PORT": str(port)}
    proc = Process(genomhub("run", service), tmp_path / f"{service}.log", env)
    proc.start()
    try:
        proc.wait_http(port, ready, timeout)
        yield
    finally:
        proc.stop()


def record_key_of(data: dict[str, Any]) -> str:
    """The key a producer would give ``data``: a submission's bare pseudonym (which replays of
    old records still carry), else the sample's own key, so that each payload is judged on its
    data rather than refused for its key."""
    if isinstance(submission := data.get("submission"), dict) and "sample_id" in submission:
        return str(submission["sample_id"])
    if isinstance(data.get("region"), str) and isinstance(data.get("sample_id"), str):
        return f"{data['region']}{SAMPLE_KEY_SEPARATOR}{data['sample_id']}"
    return "hostile"


def send_hostile(bootstrap: str, template: Event, hostile: list[Hostile]) -> None:
    """Each hostile payload under the headers of ``template``'s type, with its own event id."""
    items = []
    for event_id, data, _ in hostile:
        headers, _ = encode(template, event_id=event_id, source="/genomhub/compromised")
        key = record_key_of(data).encode()
        items.append((key, json.dumps(data).encode(), headers))
    asyncio.run(write_as_compromised_service(bootstrap, type(template), items))


def dead_letter_codes(bootstrap: str, model: type[Event], ids: set[str]) -> dict[str, str]:
    found = {}
    for record in records(bootstrap, dlq_name(topic_name(model))):
        headers = dict(normalise_headers(record.headers))
        event_id = headers.get("ce_id", b"").decode()
        if event_id in ids:
            found[event_id] = headers["genomhub_dlq_code"].decode()
    return found


def expect_dead_letters(bootstrap: str, model: type[Event], hostile: list[Hostile]) -> None:
    wanted = {event_id: code for event_id, _, code in hostile}
    found = wait_for(
        lambda: (
            codes if len(codes := dead_letter_codes(bootstrap, model, set(wanted))) == len(wanted) else None
        ),
        timeout=90,
        what=f"{len(wanted)} dead letters on {dlq_name(topic_name(model))}",
    )
    assert found == wanted


def data(event: Event, **submission: Any) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(event.model_dump_json())
    if "submission" in out:
        out["submission"].update(submission)
    return out


def test_a_path_as_submission_id_or_a_file_outside_the_archive_reaches_no_folder(
    kafka_bootstrap: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    run_id = uuid.uuid4().hex[:8]
    # Short enough for the old 64-character id rule: the old harmoniser queued it as a job.
    victim = Path(tempfile.mkdtemp(prefix="victim-", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(victim, ignore_errors=True))
    (victim / "keep.txt").write_text("must survive")
    runs = StateSettings().state_dir / "harmoniser" / "runs"
    sub = submission(1, sample=f"S-{run_id}-H").model_copy(update={"submission_id": issued_id(run_id + "h")})
    accepted = validated(sub, "accepted")
    escaped = data(accepted)
    escaped["files"][0]["url"] = "file:///etc/passwd"
    hostile: list[Hostile] = [
        (f"{run_id}-abs", data(accepted, submission_id=str(victim)), "unsafe_id"),
        (f"{run_id}-up", data(accepted, submission_id=f"../../../../{victim.relative_to('/')}"), "unsafe_id"),
        (f"{run_id}-dotdot", data(accepted, sample_id=".."), "unsafe_id"),
        (f"{run_id}-etc", escaped, "outside_archive"),
    ]
    send_hostile(kafka_bootstrap, accepted, hostile)

    with consuming("harmoniser", kafka_bootstrap, tmp_path, request):
        expect_dead_letters(kafka_bootstrap, Validated, hostile)
    assert (victim / "keep.txt").read_text() == "must survive"
    assert JobStore(HarmoniserSettings().database_url).get(sub.submission_id) is None, "no job was queued"
    assert not (runs / sub.submission_id).exists()


def test_impossible_events_never_reach_the_catalogue(
    kafka_bootstrap: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    run_id = uuid.uuid4().hex[:8]
    subs = [
        submission(n, sample=f"S-{run_id}-{n}").model_copy(
            update={"submission_id": issued_id(f"{run_id}-{n}")}
        )
        for n in range(1, 7)
    ]
    billion = data(validated(subs[0], "rejected"))
    billion["genome_equivalents"] = "1000000000"
    hostile_validated: list[Hostile] = [
        (f"{run_id}-ge", billion, "impossible_genome_equivalents"),
        (
            f"{run_id}-1900",
            data(validated(subs[1], "rejected"), received_at="1900-01-15T10:00:00Z"),
            "impossible_time",
        ),
        (
            f"{run_id}-cpr",
            data(validated(subs[2], "rejected"), patient_id="120385-1234"),
            "direct_identifier",
        ),
    ]
    hostile_harmonised: list[Hostile] = [
        (f"{run_id}-9999", data(harmonised(subs[3]), received_at="9999-12-15T10:00:00Z"), "impossible_time"),
        (
            f"{run_id}-cprs",
            data(harmonised(subs[4]), sample_id="S-12\u201303\u201385-1234"),
            "direct_identifier",
        ),
    ]
    send_hostile(kafka_bootstrap, validated(subs[0]), hostile_validated)
    send_hostile(kafka_bootstrap, harmonised(subs[3]), hostile_harmonised)
    good = validated(subs[5], "rejected")
    send_hostile(kafka_bootstrap, good, [(f"{run_id}-good", data(good), "")])

    url = f"sqlite:///{tmp_path / 'catalogue.sqlite'}"
    env = {"GENOMHUB_INDEXER_DATABASE_URL": url}
    with consuming("indexer", kafka_bootstrap, tmp_path, request, env, "/readyz", timeout=90):
        expect_dead_letters(kafka_bootstrap, Validated, hostile_validated)
        expect_dead_letters(kafka_bootstrap, Harmonised, hostile_harmonised)
        catalogue = Catalogue(url)
        try:
            wait_for(lambda: subs[5].submission_id in json.dumps(catalogue.dump()), what="the good record")
            dump = json.dumps(catalogue.dump())
        finally:
            catalogue.close()
    for sub in subs[:5]:
        assert sub.submission_id not in dump and sub.sample_id not in dump
    assert "120385-1234" not in dump


def test_impossible_events_are_never_billed(
    kafka_bootstrap: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    run_id = uuid.uuid4().hex[:8]
    jan = datetime(2026, 1, 15, 12, tzinfo=UTC)
    template = indexed(f"{run_id}-T", received_at=jan)
    hostile: list[Hostile] = [
        (
            f"{run_id}-ge",
            {**data(template), "genome_equivalents": "1000000000"},
            "impossible_genome_equivalents",
        ),
        (f"{run_id}-1900", data(template, received_at="1900-01-15T10:00:00Z"), "impossible_time"),
        (f"{run_id}-9999", data(template, received_at="9999-12-15T10:00:00Z"), "impossible_time"),
        (f"{run_id}-cprs", data(template, sample_id="0101901234"), "direct_identifier"),
        (f"{run_id}-cprp", data(template, patient_id="P-01.01.90-1234"), "direct_identifier"),
        (f"{run_id}-dept", data(template, department="Genetik 010190\u00a01234"), "direct_identifier"),
        (f"{run_id}-sid", data(template, submission_id="/var/lib/genomhub"), "unsafe_id"),
    ]
    send_hostile(kafka_bootstrap, template, hostile)
    good = indexed(f"{run_id}-GOOD", received_at=jan, ge="1.5")
    send_hostile(kafka_bootstrap, good, [(f"{run_id}-good", data(good), "")])

    url = f"sqlite:///{tmp_path / 'billing.sqlite'}"

    def billed() -> list[Any]:
        store = BillingStore(url, migrate=False)
        try:
            return store.billed()
        finally:
            store.dispose()

    env = {"GENOMHUB_BILLING_DATABASE_URL": url}
    with consuming("billing", kafka_bootstrap, tmp_path, request, env, "/readyz", timeout=90):
        expect_dead_letters(kafka_bootstrap, Indexed, hostile)
        wait_for(
            lambda: any(b.accrual.sample_id == good.submission.sample_id for b in billed()),
            what="the good one",
        )
    accruals = billed()
    assert not {template.submission.sample_id, "0101901234"} & {b.accrual.sample_id for b in accruals}
    assert not {b.accrual.submission_id for b in accruals} & {
        template.submission.submission_id,
        "/var/lib/genomhub",
    }
    assert not [b for b in accruals if b.billed_month < "2019-01" or b.billed_month > "2026-12"]


def test_the_validator_reads_no_file_outside_the_archive(
    kafka_bootstrap: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    run_id = uuid.uuid4().hex[:8]
    template = FileReceived.model_validate(
        {
            "submission": submission(1, sample=f"S-{run_id}-V").model_copy(
                update={"submission_id": issued_id(run_id + "v")}
            ),
            "files": [
                {
                    "name": "R1.fastq.gz",
                    "role": "raw_reads",
                    "url": f"{ArchiveSettings().store_url}/syddanmark/S-{run_id}-V/R1.fastq.gz",
                    "size": 1,
                    "sha256": "a" * 64,
                    "md5": "b" * 32,
                }
            ],
        }
    )
    outside = data(template)
    outside["files"][0]["url"] = "file:///etc/passwd"
    climbing = data(template)
    climbing["files"][0]["url"] = f"{ArchiveSettings().store_url}/../../../../etc/passwd"
    hostile: list[Hostile] = [
        (f"{run_id}-passwd", outside, "outside_archive"),
        (f"{run_id}-climb", climbing, "unsafe_id"),
    ]
    send_hostile(kafka_bootstrap, template, hostile)

    with consuming("validator", kafka_bootstrap, tmp_path, request):
        expect_dead_letters(kafka_bootstrap, FileReceived, hostile)
    subject = template.submission.submission_id.encode()
    assert not [
        r
        for r in records(kafka_bootstrap, topic_name(Validated))
        if dict(normalise_headers(r.headers)).get("ce_subject") == subject
    ], "nothing was validated"


def test_forged_headers_and_keys_are_never_billed(
    kafka_bootstrap: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """What travels beside the data is forged: a key naming another region's sample, a CPR
    number as the event id or the source, a subject naming another submission, a schema of
    another type (``ce_dataschema``), a time in
    1900 or in the future; or the value is one Python's JSON parser chokes on. Each is
    dead-lettered with its code, billed nothing, and the consumer goes on."""
    run_id = uuid.uuid4().hex[:8]
    jan = datetime(2026, 1, 15, 12, tzinfo=UTC)
    victim = indexed(f"S-{run_id}-X", region=Region.HOVEDSTADEN, received_at=jan)
    forged = indexed(f"S-{run_id}-X", region=Region.SYDDANMARK, received_at=jan, submission_id=run_id + "f")
    value = forged.model_dump_json().encode()
    cases: list[tuple[str, bytes, dict[str, bytes], str]] = [
        (f"{run_id}-key", victim.key().encode(), {}, "inconsistent_event"),
        (f"{run_id}x120385-1234", forged.key().encode(), {}, "direct_identifier"),
        (
            f"{run_id}-src",
            forged.key().encode(),
            {"ce_source": b"/genomhub/120385-1234"},
            "direct_identifier",
        ),
        (
            f"{run_id}-subj",
            forged.key().encode(),
            {"ce_subject": victim.submission.submission_id.encode()},
            "inconsistent_event",
        ),
        (
            f"{run_id}-schema",
            forged.key().encode(),
            {"ce_dataschema": Validated.schema_uri().encode()},
            "inconsistent_event",
        ),
        (f"{run_id}-1900", forged.key().encode(), {"ce_time": b"1900-01-01T00:00:00Z"}, "impossible_time"),
        (f"{run_id}-9999", forged.key().encode(), {"ce_time": b"9999-12-31T00:00:00Z"}, "impossible_time"),
    ]
    items = []
    for event_id, key, replace, _ in cases:
        headers, _ = encode(forged, event_id=event_id, source="/genomhub/compromised")
        items.append((key, value, [(k, replace.get(k, v)) for k, v in headers]))
    # Values Python's JSON parser failed on past the bus's handling, stopping the consumer.
    poison = {f"{run_id}-digits": b'{"files": ' + b"1" * 5000 + b"}", f"{run_id}-deep": b"[" * 100_000}
    for event_id, raw in poison.items():
        headers, _ = encode(forged, event_id=event_id, source="/genomhub/compromised")
        items.append((forged.key().encode(), raw, headers))
        cases.append((event_id, b"", {}, "not_json"))
    asyncio.run(write_as_compromised_service(kafka_bootstrap, Indexed, items))
    good = indexed(f"S-{run_id}-GOOD", received_at=jan, ge="1.5")
    send_hostile(kafka_bootstrap, good, [(f"{run_id}-good", data(good), "")])

    position = GroupPosition(kafka_bootstrap, "billing")
    request.addfinalizer(position.restore)
    url = f"sqlite:///{tmp_path / 'billing.sqlite'}"
    port = free_port()
    env = {"GENOMHUB_BILLING_DATABASE_URL": url, "GENOMHUB_BILLING_PORT": str(port)}
    proc = Process(genomhub("run", "billing"), tmp_path / "billing.log", env)
    proc.start()
    try:
        proc.wait_http(port, "/readyz", timeout=90)
        expect_dead_letters(kafka_bootstrap, Indexed, [(i, {}, code) for i, _, _, code in cases])

        def billed() -> list[Any]:
            store = BillingStore(url, migrate=False)
            try:
                return store.billed()
            finally:
                store.dispose()

        wait_for(
            lambda: any(b.accrual.sample_id == good.submission.sample_id for b in billed()),
            what="the good one",
        )
    finally:
        proc.stop()
    assert forged.submission.sample_id not in {b.accrual.sample_id for b in billed()}
    assert "120385" not in (tmp_path / "billing.log").read_text()


def test_a_forged_reharmonisation_request_queues_no_run(
    kafka_bootstrap: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """What a compromised archive could ask the harmoniser: a rerun of a submission it never
    harmonised, of a known submission under another sample (its headers agreeing with either the
    data or the true sample), of a path for a submission, with a release that is no release. Each
    is dead-lettered with its code, and no run is queued."""
    run_id = uuid.uuid4().hex[:8]
    sub = submission(1, sample=f"S-{run_id}-R").model_copy(update={"submission_id": issued_id(run_id + "r")})
    jobs = JobStore(HarmoniserSettings().database_url)
    intake = validated(sub, "accepted")
    jobs.enqueue(sub.submission_id, f"{run_id}-cause", f"{run_id}-event", intake.model_dump_json(), [])
    with jobs.writing() as conn:  # its intake run long finished and reported: nothing for the service to run
        conn.execute(
            update(job_table)
            .where(job_table.c.job_key == sub.submission_id)
            .values(state="failed", emitted=True)
        )
    template = ReharmonisationRequested(
        campaign_id="a" * 32,
        region=sub.region,
        sample_id=sub.sample_id,
        submission_id=sub.submission_id,
        sarek_version="3.6.0",
        requested_at=datetime.now(UTC),
    )
    asked = json.loads(template.model_dump_json())
    unknown = issued_id(run_id + "unknown")
    # each of these under headers and a key that agree with it: refused for what it asks
    never_harmonised = template.model_copy(update={"submission_id": unknown})
    another_sample = template.model_copy(update={"sample_id": f"S-{run_id}-OTHER"})
    asked_of: list[tuple[Event, Hostile]] = [
        (
            never_harmonised,
            (f"{run_id}-unknown", json.loads(never_harmonised.model_dump_json()), "unknown_submission"),
        ),
        (
            another_sample,
            (f"{run_id}-sample", json.loads(another_sample.model_dump_json()), "inconsistent_event"),
        ),
    ]
    forged: list[Hostile] = [
        (f"{run_id}-headers", asked | {"sample_id": f"S-{run_id}-OTHER"}, "inconsistent_event"),
        (f"{run_id}-path", asked | {"submission_id": "../../../etc"}, "unsafe_id"),
        (f"{run_id}-release", asked | {"sarek_version": "3.6.0; rm -rf /"}, "schema"),
    ]
    send_hostile(kafka_bootstrap, template, forged)
    for own, payload in asked_of:
        send_hostile(kafka_bootstrap, own, [payload])
    hostile = forged + [payload for _, payload in asked_of]
    with consuming("harmoniser", kafka_bootstrap, tmp_path, request):
        expect_dead_letters(kafka_bootstrap, ReharmonisationRequested, hostile)
    assert [j.key for j in jobs.all() if j.submission_id in (sub.submission_id, unknown)] == [
        sub.submission_id
    ]
