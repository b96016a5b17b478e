"""The consume loop: what ``shared.bus.Service`` costs a record, against a bare aiokafka loop
on the same broker, the same records and the same decoding.

A real broker is started (the local KRaft one, SASL/SCRAM as in every test) and
``--records`` indexed events are published once. Then each loop runs in its own fresh
process (so resident memory is comparable) with its own consumer group, from the earliest
offset:

- service: a real :class:`shared.bus.Service` (its consume loop with batched commits, a span,
  metrics and the dead-letter guard around every record) whose handler counts;
- bare: ``getmany`` batches, each record decoded, the batch's offsets committed: the floor
  any consume loop stands on, and the baseline.

Each record is decoded by ``shared.envelope.decode`` into the event model in both (the schema
and meaning checks every service runs). Printed per loop: start-up until the first record
(group join, assignment), records a second from the first to the last, CPU seconds per
10,000 records (load-independent), and peak resident memory.

The same script, run on 2026-12-01 with a faust agent (faust-streaming 0.15.3, manual acks)
as the loop the services then ran, measured faust at 0.65 x the bare loop's records a second,
1.6 x its CPU a record and 1.5 s slower to its first record, at the same memory; which is why
the services now run the loop in ``shared.bus``.

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

from shared.bus import Service, publish  # noqa: E402
from shared.config import BillingSettings, StateSettings  # noqa: E402
from shared.envelope import Envelope, decode, normalise_headers  # noqa: E402
from shared.events import Indexed  # noqa: E402
from shared.kafka import kafka_access  # noqa: E402
from shared.topics import ADMIN, topic_name  # noqa: E402
from tests.unit.billing.billing_factories import indexed  # noqa: E402
from tools.kafka.broker import start_for_benchmark  # noqa: E402

TOPIC = topic_name(Indexed)
LOOPS = ("bare", "service")
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
        """Decode one record as a service does; True once the last one is handled."""
        decode(normalise_headers(message.headers), message.value, Indexed, message.key)
        return self.count()

    def count(self) -> bool:
        if self.first is None:
            self.first = time.perf_counter()
            self.cpu_at_first = time.process_time()
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


def run_service(records: int, group: str) -> None:
    counter = Counter(records)
    # billing's settings: it is the service that consumes Indexed
    service = Service(group, BillingSettings(), http_port=0, principal=ADMIN)

    async def count(envelope: Envelope[Indexed]) -> None:
        if counter.count():
            counter.report()
            os._exit(0)

    service.on(Indexed, count)
    service.run()


def run_bare(records: int, group: str) -> None:
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
        (run_bare if args.child == "bare" else run_service)(args.records, args.group)
        return

    work = Path(tempfile.mkdtemp(prefix="genomhub-bench-consume-"))
    home = work / "home"
    broker, _ = start_for_benchmark(home, StateSettings().cache)
    try:
        started = time.perf_counter()
        asyncio.run(fill(args.records))
        print(f"{args.records} indexed events published in {time.perf_counter() - started:.1f} s")
        results: dict[str, list[dict[str, float]]] = {loop: [] for loop in LOOPS}
        for round_ in range(args.rounds):
            for loop in LOOPS if round_ % 2 == 0 else reversed(LOOPS):
                results[loop].append(child(loop, args.records, f"bench-{loop}-{round_}"))
        print(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; best of {args.rounds} runs each")
        base = {key: min(r[key] for r in results["bare"]) for key in results["bare"][0]}
        base["rate"] = max(r["rate"] for r in results["bare"])
        for loop in LOOPS:
            best = {key: min(r[key] for r in results[loop]) for key in results[loop][0]}
            best["rate"] = max(r["rate"] for r in results[loop])
            print(
                f"{loop:<9} start-up to first record {best['startup_s']:5.1f} s   "
                f"{best['rate']:7.0f} records/s ({best['rate'] / base['rate']:.2f} x bare)   "
                f"CPU {best['cpu_per_10k']:5.2f} s / 10k records   peak RSS {best['peak_rss_mb']:4.0f} MB"
                + ("   baseline" if loop == "bare" else "")
            )
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
