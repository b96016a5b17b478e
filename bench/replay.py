"""Benchmark of a national replay: the catalogue and billing rebuilt from the log.

A real broker is started (the local KRaft one, SASL/SCRAM as in every test) and a log of
``--submissions`` submissions (default 60,000: NGC holds over 60,000 genomes) is written to
it through the project's producer (``shared.bus.publish``, each event type as the service
that emits it): each submission's file-received, validated, harmonised (for the 97 % that
pass QC) and indexed events, built with the event models of ``shared/events.py`` and so
valid per their schemas. Then, on each engine (a SQLite file; PostgreSQL from Debian's
packages, fsync on, asynchronous commit), each in a fresh database and in a process of its
own (so that peak resident memory is comparable), billing first and then the indexer (whose
replay emits indexed events again, which would grow billing's topic):

- raw: a plain aiokafka consumer on the same topics (``getmany``, each value parsed as JSON,
  offsets committed after each poll batch) that inserts, per poll batch in one transaction,
  plain batched INSERTs of the same rows the service ends with (prepared before it starts:
  billing's accruals; the indexer's events, submissions, files and samples): the floor;
- genomhub: ``genomhub replay --service S --to-earliest``, then ``genomhub run S`` until its
  consumer group's lag is 0.

Both are timed alike, from outside, by the consumer group: events a second from the moment
the group is stable with the process in it to lag 0 (start-up, migrations and the group
join excluded), and the wall time from the process's launch to lag 0 (included). Printed per service and engine: events
a second, the ratio to raw, peak RSS, and the wall time of a whole national rebuild (the
indexer's replay, then billing's of what it emitted: here the sum of the two walls).

    .venv/bin/python bench/replay.py [--submissions 60000] [--engines sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aiokafka import TopicPartition  # noqa: E402
from aiokafka.errors import KafkaError  # noqa: E402
from sqlalchemy import Table  # noqa: E402
from sqlalchemy.dialects import postgresql, sqlite  # noqa: E402

from services.billing import tables as billing_tables  # noqa: E402
from services.billing.accrual import accrual_of  # noqa: E402
from services.billing.months import billed_month  # noqa: E402
from services.billing.store import BillingStore  # noqa: E402
from services.indexer import tables as t  # noqa: E402
from services.indexer.catalogue import CatalogueEvent, fold  # noqa: E402
from services.indexer.store import Catalogue, event_row, file_rows, sample_row, submission_row  # noqa: E402
from shared.bus import end_offsets, partitions_of, publish  # noqa: E402
from shared.config import StateSettings  # noqa: E402
from shared.database import make_engine  # noqa: E402
from shared.envelope import normalise_headers  # noqa: E402
from shared.events import (  # noqa: E402
    AnalysisType,
    Event,
    FileReceived,
    Harmonised,
    Indexed,
    SampleStatus,
    StoredFile,
    Submission,
    Validated,
)
from shared.kafka import KafkaAccess, kafka_access  # noqa: E402
from shared.synthetic import DEPARTMENTS  # noqa: E402
from shared.topics import ADMIN, SUBSCRIPTIONS, consumer_group, topic_name  # noqa: E402
from tests.unit.indexer.factories import digest, harmonised, validated  # noqa: E402
from tools.background import free_port  # noqa: E402
from tools.kafka.broker import start_for_benchmark  # noqa: E402

REGIONS = list(DEPARTMENTS)
REGION_WEIGHTS = [0.33, 0.15, 0.1, 0.22, 0.2]
ANALYSES = [AnalysisType.WGS] * 12 + [AnalysisType.WES] * 5 + [AnalysisType.PANEL] * 2
YEAR_START = datetime(2025, 1, 1, tzinfo=UTC)
CHUNK = 2_000
POLL_S = 0.2
SERVICES = ("billing", "indexer")  # billing first: the indexer's replay emits indexed events again
URL_SETTING = {"indexer": "GENOMHUB_INDEXER_DATABASE_URL", "billing": "GENOMHUB_BILLING_DATABASE_URL"}
EMITTER = {FileReceived: "receiver", Validated: "validator", Harmonised: "harmoniser", Indexed: "indexer"}


@dataclass(frozen=True)
class SubmissionLog:
    """One submission's events with their ids, as the pipeline would have written them."""

    number: int
    events: list[tuple[Event, str]]

    @property
    def catalogue_events(self) -> list[CatalogueEvent]:
        return [
            CatalogueEvent(
                id=event_id,
                time=event.submission.received_at + timedelta(hours=k),
                source=f"/genomhub/{EMITTER[type(event)]}",
                trace_id=digest(event_id, 32),
                data=event,
            )
            for k, (event, event_id) in enumerate(self.events)
            if isinstance(event, Validated | Harmonised)
        ]


def submission_log(n: int) -> SubmissionLog:
    """Submission ``n``'s events; the same every time (seeded by ``n``)."""
    r = random.Random(n)
    region = r.choices(REGIONS, REGION_WEIGHTS)[0]
    sub = Submission(
        submission_id=f"{n:032x}",  # the receiver's shape: 32 hex digits
        region=region,
        department=r.choice(DEPARTMENTS[region]),
        sample_id=f"S{n:08d}",
        patient_id=f"P{n:08d}",
        analysis_type=r.choice(ANALYSES),
        platform="ILLUMINA",
        received_at=YEAR_START + timedelta(seconds=r.randrange(365 * 86400)),
    )
    accepted = r.random() > 0.03
    ge = f"{r.randrange(200_000, 1_600_000) / 1_000_000:.6f}"
    checked = validated(sub, "accepted" if accepted else "rejected", ge)
    received = FileReceived(
        submission=sub, files=[f.model_dump(include=set(StoredFile.model_fields)) for f in checked.files]
    )
    events: list[tuple[Event, str]] = [(received, f"fr-{n:08d}"), (checked, f"va-{n:08d}")]
    if accepted:
        events.append((harmonised(sub, ge=ge), f"ha-{n:08d}"))
    status = SampleStatus.HARMONISED if accepted else SampleStatus.REJECTED
    indexed = Indexed(
        submission=sub, status=status, accepted=accepted, genome_equivalents=Decimal(ge), files=4
    )
    events.append((indexed, f"ix-{n:08d}"))
    return SubmissionLog(n, events)


def chunks(submissions: int) -> Iterator[list[SubmissionLog]]:
    for start in range(0, submissions, CHUNK):
        yield [submission_log(n) for n in range(start, min(submissions, start + CHUNK))]


async def write_log(submissions: int) -> int:
    written = 0
    for chunk in chunks(submissions):
        for model, principal in EMITTER.items():
            events = [(e, i) for s in chunk for e, i in s.events if type(e) is model]
            await publish(events, f"/genomhub/{principal}", principal=principal)
            written += len(events)
    return written


# -- the raw pipeline ------------------------------------------------------------------


Rows = dict[str, list[dict[str, Any]]]
"""Rows to insert by table name, for one record."""


def raw_rows(service: str, submissions: int) -> dict[str, Rows]:
    """The rows each record (by event id) leaves in the service's database: for billing an
    accepted sample's accrual; for the indexer each event's timeline row, and with the
    submission's last event its submission, files and sample, as the indexer folds them."""
    out: dict[str, Rows] = {}
    for chunk in chunks(submissions):
        for s in chunk:
            if service == "billing":
                event, event_id = s.events[-1]
                assert isinstance(event, Indexed)
                a = accrual_of(event, event_id)
                rows: Rows = {}
                if a is not None:
                    rows["billing_accruals"] = [
                        {
                            "region": a.region.value,
                            "sample_id": a.sample_id,
                            "submission_id": a.submission_id,
                            "department": a.department,
                            "analysis_type": a.analysis_type.value,
                            "received_at": a.received_at,
                            "received_month": a.received_month,
                            "billed_month": billed_month(a.received_month, None),
                            "ge_micro": a.ge_micro,
                            "event_id": a.event_id,
                        }
                    ]
                out[event_id] = rows
                continue
            events = s.catalogue_events
            for e in events[:-1]:
                out[e.id] = {t.events.name: [event_row(e)]}
            last, record = events[-1], fold(events)
            sub, files = submission_row(record), file_rows(record)
            out[last.id] = {
                t.events.name: [event_row(last)],
                t.submissions.name: [sub],
                t.files.name: files,
                t.samples.name: [sample_row(sub, len(files), 1)],
            }
    return out


def run_raw(service: str, url: str, submissions: int, group: str) -> None:
    """The raw pipeline's process: runs until the parent stops it at lag 0."""
    rows = raw_rows(service, submissions)
    tables: list[Table] = (
        [billing_tables.accruals] if service == "billing" else [t.events, t.submissions, t.files, t.samples]
    )
    engine = make_engine(url)
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    inserts = {table.name: dialect.insert(table).on_conflict_do_nothing() for table in tables}
    topics = [topic_name(m) for m in SUBSCRIPTIONS[service]]

    async def loop() -> None:
        consumer = kafka_access(ADMIN).consumer(
            *topics, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=1000)
                batch: dict[str, list[dict[str, Any]]] = {name: [] for name in inserts}
                for records in batches.values():
                    for record in records:
                        json.loads(record.value)
                        event_id = dict(normalise_headers(record.headers))["ce_id"].decode()
                        for name, found in rows[event_id].items():
                            batch[name] += found
                with engine.begin() as conn:
                    for name, values in batch.items():
                        if values:
                            conn.execute(inserts[name], values)
                if batches:
                    await consumer.commit()
        finally:
            await consumer.stop()

    asyncio.run(loop())


# -- measuring -------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    events: int
    rate: float
    wall_s: float
    peak_rss_mb: float


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def until_caught_up(
    access: KafkaAccess, group: str, ends: dict[TopicPartition, int], proc: subprocess.Popen[bytes]
) -> Figures:
    """Watch ``group`` until its committed offsets reach ``ends``; the process's figures.

    The rate is counted from the moment the group is stable with the process as its member
    (start-up, migrations and the join behind it) to lag 0, alike for both loops."""
    launched = time.perf_counter()
    total = sum(ends.values())
    joined: float | None = None
    admin = access.admin()
    await admin.start()
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the process stopped ({proc.returncode}) before its lag was 0")
            try:
                if joined is None:
                    (described,) = await admin.describe_consumer_groups([group])
                    if any(g[2] == "Stable" and g[5] for g in described.groups):
                        joined = time.perf_counter()
                    await asyncio.sleep(POLL_S / 4)
                    continue
                offsets = await admin.list_consumer_group_offsets(group, partitions=list(ends))
            except KafkaError:  # the group has no coordinator until its consumer joins
                await asyncio.sleep(POLL_S)
                continue
            done = sum(min(max(meta.offset, 0), ends[tp]) for tp, meta in offsets.items())
            if done >= total:
                now = time.perf_counter()
                return Figures(total, total / (now - joined), now - launched, peak_rss_mb(proc.pid))
            await asyncio.sleep(POLL_S)
    finally:
        await admin.close()


async def log_ends(access: KafkaAccess, service: str) -> dict[TopicPartition, int]:
    """The end of each partition the service consumes (the log starts at 0: kept forever)."""
    partitions: list[TopicPartition] = []
    for model in SUBSCRIPTIONS[service]:
        partitions += await partitions_of(access, topic_name(model))
    return await end_offsets(access, partitions)


def measure(service: str, url: str, args: argparse.Namespace, work: Path, loop: str) -> Figures:
    env = {**os.environ, URL_SETTING[service]: url, f"GENOMHUB_{service.upper()}_PORT": str(free_port())}
    access = kafka_access(ADMIN)
    ends = asyncio.run(log_ends(access, service))
    log = (work / f"{service}-{loop}.log").open("wb")
    genomhub = str(Path(sys.executable).parent / "genomhub")
    if loop == "raw":
        group = f"bench-raw-{service}-{time.monotonic_ns()}"
        command = [sys.executable, __file__, "--raw", service, "--url", url, "--group", group]
        command += ["--submissions", str(args.submissions)]
    else:
        group = consumer_group(service)
        replay = [genomhub, "replay", "--service", service, "--to-earliest"]
        subprocess.run(replay, env=env, check=True, stdout=subprocess.DEVNULL)
        command = [genomhub, "run", service]
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    try:
        return asyncio.run(until_caught_up(access, group, ends, proc))
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def fresh_database(engine: str, service: str, folder: Path, server: Any) -> str:
    url = (
        f"sqlite:///{folder / f'{service}-{time.monotonic_ns()}.sqlite'}"
        if engine == "sqlite"
        else server.new_database(service)
    )
    (BillingStore(url) if service == "billing" else _migrated_catalogue(url)).dispose()
    return url


def _migrated_catalogue(url: str) -> Catalogue:
    catalogue = Catalogue(url)
    catalogue.migrate()
    return catalogue


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--submissions", type=int, default=60_000)
    parser.add_argument("--engines", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    parser.add_argument("--raw", choices=SERVICES, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--group", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw:
        run_raw(args.raw, args.url, args.submissions, args.group)
        return
    engines = [e for e in args.engines.split(",") if e]
    # Stopped from outside, the run still stops its broker and its PostgreSQL server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))

    work = Path(tempfile.mkdtemp(prefix="genomhub-bench-replay-"))
    home = work / "home"
    broker, _ = start_for_benchmark(home, StateSettings().cache)
    server = None
    try:
        if "postgresql" in engines:
            from tests.postgres import PostgresServer

            server = PostgresServer(durable=True).start()
        started = time.perf_counter()
        written = asyncio.run(write_log(args.submissions))
        print(
            f"replay benchmark: {args.submissions:,} submissions, {written:,} events written "
            f"in {time.perf_counter() - started:.0f} s; {os.cpu_count()} cores"
        )
        results: dict[tuple[str, str, str], Figures] = {}
        for service in SERVICES:
            for engine in engines:
                for loop in ("raw", "genomhub"):
                    url = fresh_database(engine, service, work, server)
                    results[(service, engine, loop)] = figures = measure(service, url, args, work, loop)
                    print(
                        f"  {service:<8} {engine:<10} {loop:<9} {figures.events:8,} events  "
                        f"{figures.rate:8,.0f} events/s  wall {figures.wall_s:6.1f} s  "
                        f"peak RSS {figures.peak_rss_mb:4.0f} MB",
                        flush=True,
                    )
        print(f"load {os.getloadavg()[0]:.1f}")
        for engine in engines:
            for service in SERVICES:
                raw, ours = results[(service, engine, "raw")], results[(service, engine, "genomhub")]
                print(
                    f"{service:<8} {engine:<10} genomhub {ours.rate:8,.0f} events/s = {ours.rate / raw.rate:4.2f} x raw "
                    f"({raw.rate:,.0f})   peak RSS {ours.peak_rss_mb:4.0f} MB (raw {raw.peak_rss_mb:.0f} MB)"
                )
            rebuild = sum(results[(s, engine, "genomhub")].wall_s for s in SERVICES)
            print(
                f"national rebuild on {engine} ({args.submissions:,} submissions: the indexer's replay, then "
                f"billing's): {rebuild:.0f} s wall"
            )
    finally:
        if server is not None:
            server.stop()
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
