"""The consume loop: faust's agent (what ``shared.bus.Service`` runs) against a plain aiokafka
consumer loop, on the same broker, the same records and the same work per record.

Issue: acknowledgement is done by hand (``stream.noack()`` and ``event.ack()``), so faust's
stream machinery is carried for little. This measures what it costs. A real broker is
started (the local KRaft one, SASL/SCRAM as in every test), ``--records`` indexed events
are published once, then each loop runs in its own fresh process (so resident memory is
comparable) with its own consumer group, reading from the earliest offset:

- faust: an app built as ``Service`` builds it (manual acks, commit every second), one agent;
- aiokafka: ``getmany`` batches, each record handled in turn, the batch's offsets committed
  when every record of it was handled (the same at-least-once rule).

Each record gets the same work in both: ``shared.envelope.decode`` into the event model (the
schema and meaning checks every service runs). Printed per loop: start-up until the first
record (group join, assignment), records a second from the first to the last handled, CPU
seconds per 10,000 records (load-independent), and peak resident memory; faust is the
baseline.

    .venv/bin/python bench/consume.py [--records 20000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.bus import publish  # noqa: E402
from shared.config import get_settings  # noqa: E402
from shared.envelope import decode, normalise_headers  # noqa: E402
from shared.events import Indexed  # noqa: E402
from shared.kafka import kafka_access  # noqa: E402
from shared.topics import ADMIN, topic_name  # noqa: E402
from tests.unit.billing.billing_factories import indexed  # noqa: E402
from tools.kafka.broker import LocalBroker  # noqa: E402

TOPIC = topic_name(Indexed)
LOOPS = ("faust", "aiokafka")
FIGURES = '{"startup_s"'


class Counter:
    """The per-record work of both loops, and the figures of one run."""

    def __init__(self, records: int) -> None:
        self.records = records
        self.handled = 0
        self.began = time.perf_counter()
        self.first: float | None = None
        self.cpu_at_first = 0.0

    def handle(self, message: Any) -> bool:
        """Decode one record as a service would; True once the last one is handled."""
        if self.first is None:
            self.first = time.perf_counter()
            self.cpu_at_first = time.process_time()
        decode(normalise_headers(message.headers), message.value, Indexed, message.key)
        self.handled += 1
        return self.handled >= self.records

    def report(self) -> None:
        assert self.first is not None
        now = time.perf_counter()
        figures = {
            "startup_s": self.first - self.began,
            "rate": self.handled / max(now - self.first, 1e-9),
            "cpu_per_10k": (time.process_time() - self.cpu_at_first) / self.handled * 10_000,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
        print(json.dumps(figures), flush=True)


def run_faust(records: int, group: str) -> None:
    import faust

    counter = Counter(records)
    settings = get_settings()
    datadir = settings.state_dir / "faust" / group
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = kafka_access(ADMIN, settings).faust_app(
        group,
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        store="memory://",
        datadir=str(datadir),
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        topic_partitions=settings.topic_partitions,
    )

    async def agent(stream: faust.StreamT[Any]) -> None:
        assert isinstance(stream, faust.Stream)
        async for event in stream.noack().events():
            done = counter.handle(event.message)
            event.ack()
            if done:
                counter.report()
                os._exit(0)

    app.agent(app.topic(TOPIC), name="bench")(agent)
    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()


def run_aiokafka(records: int, group: str) -> None:
    async def loop() -> None:
        counter = Counter(records)
        consumer = kafka_access(ADMIN).consumer(
            TOPIC,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=10_000,
            heartbeat_interval_ms=2_000,
        )
        await consumer.start()
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=1000, max_records=500)
                done = False
                for messages in batches.values():
                    for message in messages:
                        done = counter.handle(message) or done
                if batches:
                    await consumer.commit()
                if done:
                    counter.report()
                    return
        finally:
            await consumer.stop()

    asyncio.run(loop())


def child(loop: str, records: int, group: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", loop, "--records", str(records), "--group", group],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    # A faust worker sends what is printed through its logging, to stderr.
    found = [
        line[line.index(FIGURES) :] for line in (done.stdout + done.stderr).splitlines() if FIGURES in line
    ]
    if done.returncode != 0 or not found:
        raise RuntimeError(f"{loop} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    figures: dict[str, float] = json.JSONDecoder().raw_decode(found[-1])[0]
    return figures


async def fill(records: int) -> None:
    events = [(indexed(f"BENCH{n:06d}"), f"bench-{n:08d}") for n in range(records)]
    for start in range(0, records, 1000):
        await publish(events[start : start + 1000], "/genomhub/indexer", principal="indexer")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2, help="runs of each loop, alternating")
    parser.add_argument("--child", choices=LOOPS, help=argparse.SUPPRESS)
    parser.add_argument("--group", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        (run_faust if args.child == "faust" else run_aiokafka)(args.records, args.group)
        return

    work = Path(tempfile.mkdtemp(prefix="genomhub-bench-consume-"))
    home = work / "home"
    broker = LocalBroker(home, get_settings().cache)
    try:
        state, _ = broker.start()
        os.environ["GENOMHUB_HOME"] = str(home)
        os.environ["GENOMHUB_KAFKA_BOOTSTRAP"] = state.bootstrap
        os.environ["GENOMHUB_LOG_LEVEL"] = "WARNING"
        get_settings.cache_clear()
        started = time.perf_counter()
        asyncio.run(fill(args.records))
        print(f"{args.records} indexed events published in {time.perf_counter() - started:.1f} s")
        results: dict[str, list[dict[str, float]]] = {loop: [] for loop in LOOPS}
        for round_ in range(args.rounds):
            for loop in LOOPS if round_ % 2 == 0 else reversed(LOOPS):
                results[loop].append(child(loop, args.records, f"bench-{loop}-{round_}"))
        print(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; best of {args.rounds} runs each")
        base = {key: min(r[key] for r in results["faust"]) for key in results["faust"][0]}
        base["rate"] = max(r["rate"] for r in results["faust"])
        for loop in LOOPS:
            best = {key: min(r[key] for r in results[loop]) for key in results[loop][0]}
            best["rate"] = max(r["rate"] for r in results[loop])
            print(
                f"{loop:<9} start-up to first record {best['startup_s']:5.1f} s   "
                f"{best['rate']:7.0f} records/s ({best['rate'] / base['rate']:.2f} x faust)   "
                f"CPU {best['cpu_per_10k']:5.2f} s / 10k records   peak RSS {best['peak_rss_mb']:4.0f} MB"
                + ("   baseline" if loop == "faust" else "")
            )
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
