"""Benchmark of a spoke's mirror: a national first sync, and how soon a change is seen there.

A real hub broker (the local KRaft one, SASL/SCRAM as in every test) gets ``--samples``
``indexed`` events (default 60,000: NGC holds over 60,000 genomes), spread over the regions,
through the project's producer as the indexer. The hub's publisher (``genomhub run
publisher``) writes every spoke's signed feed from them; its time to a complete feed for
``--region`` (default Syddanmark) is printed. Then, each on a fresh spoke broker of its own
and one after the other (so neither shares the two cores with the other):

- baseline: Kafka's MirrorMaker 2 alone copying the same feed topic to a spoke broker, timed
  from MM2's start until the spoke's copy holds every record of the hub's;
- genomhub: MirrorMaker 2 and the spoke service (``genomhub run spoke``) started together,
  timed until the spoke shows the verified revision that covers the hub's whole feed (its
  ``GET /v1/revision``); also the time to the first verified revision it shows.

The ratio printed is the baseline's time over genomhub's (the issue asks >= 0.5).

Then the change-to-spoke latency: ``--changes`` samples (default 50) are indexed at the hub
one at a time, ``--gap`` seconds apart, each timed from the moment its ``indexed`` event is
acknowledged by the hub's broker until the spoke's API shows it (polled every 20 ms), after
one uncounted change that shows the restarted publisher has read the log again: p50, p99 and
max, with the publisher's checkpoint interval (``--checkpoint-interval``, default the
setting's default, 1.0 s). ``--intervals 0.2,1.0`` runs the latency part once per interval
(the publisher restarted with each), to print what the interval costs.

    .venv/bin/python bench/mirror.py [--samples 60000] [--changes 50] [--intervals 1.0]

On a shared machine the figures are loaded-machine figures: compare the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from shared.auth import NATIONAL, new_token, token_hash  # noqa: E402
from shared.bus import end_offsets, partitions_of, publish, read_records  # noqa: E402
from shared.config import PublisherSettings, StateSettings  # noqa: E402
from shared.events import Indexed, Region, SampleStatus, Submission, sample_key  # noqa: E402
from shared.feed import write_hub_key_pair  # noqa: E402
from shared.kafka import KafkaAccess  # noqa: E402
from shared.topics import ADMIN, feed_topic  # noqa: E402
from tools.background import free_port  # noqa: E402
from tools.kafka.broker import start_for_benchmark  # noqa: E402
from tools.stack.demo_spoke import get_json  # noqa: E402
from tools.stack.environment import StackSettings  # noqa: E402
from tools.stack.supervisor import LocalSpoke, Supervised  # noqa: E402

CHUNK = 5000
PASSPHRASE = "genomhub bench mirror"
GENOMHUB = str(Path(sys.executable).with_name("genomhub"))


def indexed(n: int, region: Region, prefix: str = "S") -> Indexed:
    return Indexed(
        submission=Submission(
            submission_id=f"{n:032x}",
            region=region,
            department="Klinisk Genetik",
            sample_id=f"{prefix}{n:06d}",
            patient_id=f"P{n:06d}",
            analysis_type="WGS",
            platform="ILLUMINA",
            received_at=datetime(2026, 1 + n % 11, 1 + n % 28, 9, tzinfo=UTC),
        ),
        status=SampleStatus.HARMONISED,
        accepted=True,
        genome_equivalents=Decimal("1.0"),
        files=4,
    )


def regions() -> Iterator[Region]:
    while True:
        yield from Region


async def write_samples(samples: int) -> None:
    spread = regions()
    for start in range(0, samples, CHUNK):
        events = [
            (indexed(n, next(spread)), f"bench-indexed-{n}")
            for n in range(start, min(samples, start + CHUNK))
        ]
        await publish(events, "/genomhub/indexer", principal="indexer")


def visible(port: int, path: str, token: str) -> bool:
    return get_json(port, path, token)[0] == 200


def until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


async def records_on(access: KafkaAccess, topic: str) -> int:
    """Records on a topic written without transactions (a spoke's copy): its end offsets."""
    return sum((await end_offsets(access, await partitions_of(access, topic))).values())


class Publisher:
    """``genomhub run publisher`` on the hub, with the bench's checkpoint interval."""

    def __init__(self, work: Path, env: dict[str, str], interval: float) -> None:
        self.port = free_port()
        self.token = env["BENCH_NATIONAL_TOKEN"]
        own = {
            **env,
            "GENOMHUB_PUBLISHER_PORT": str(self.port),
            "GENOMHUB_PUBLISHER_CHECKPOINT_INTERVAL": str(interval),
        }
        log = work / f"publisher-{interval}.log"
        self.process = Supervised(
            "publisher", "publisher", [GENOMHUB, "run", "publisher"], own, log, self.port
        )

    def __enter__(self) -> Publisher:
        self.process.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.process.signal(signal.SIGTERM)
        if self.process.proc is not None:
            self.process.proc.wait(30)

    def spoke_row(self, region: Region) -> dict[str, Any] | None:
        status, body = get_json(self.port, "/v1/spokes", self.token)
        if status != 200:
            return None
        (row,) = [r for r in body["spokes"] if r["region"] == region.value]
        return dict(row)


def complete_feed(publisher: Publisher, region: Region, samples: int, timeout: float) -> dict[str, Any]:
    """The publisher's row once its checkpointed revision covers every sample and stays put."""
    last: list[int] = []

    def settled() -> dict[str, Any] | None:
        row = publisher.spoke_row(region)
        if row is None or row["published_upto"] < samples:
            return None
        last.append(row["published_upto"])
        return row if len(last) >= 8 and len(set(last[-8:])) == 1 else None

    found: dict[str, Any] = until(settled, timeout, "the publisher to complete the feed", interval=0.25)
    return found


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--region", type=Region, default=Region.SYDDANMARK)
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--gap", type=float, default=0.3)
    parser.add_argument(
        "--intervals",
        default=str(PublisherSettings.model_fields["checkpoint_interval"].default),
        help="comma-separated checkpoint intervals (seconds) to measure the latency with",
    )
    args = parser.parse_args()
    intervals = [float(i) for i in args.intervals.split(",") if i]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))

    work = Path(tempfile.mkdtemp(prefix="genomhub-bench-mirror-"))
    home = work / "hub"
    broker, state = start_for_benchmark(home, StateSettings().cache)
    hub_state = StateSettings(home=home)
    secret, public = write_hub_key_pair(home / "keys", PASSPHRASE)
    national = new_token()
    env = {
        **os.environ,
        "GENOMHUB_HUB_KEY_PASSPHRASE": PASSPHRASE,
        "GENOMHUB_HUB_SECRET_KEY": str(secret),
        "GENOMHUB_HUB_PUBLIC_KEY": str(public),
        "GENOMHUB_PUBLISHER_DATABASE_URL": f"sqlite:///{work / 'publisher.sqlite'}",
        "GENOMHUB_TOKENS": json.dumps({token_hash(national): NATIONAL}),
        "BENCH_NATIONAL_TOKEN": national,
    }
    hub = broker.access(ADMIN, state)
    spokes: list[LocalSpoke] = []
    try:
        started = time.perf_counter()
        asyncio.run(write_samples(args.samples))
        print(
            f"mirror benchmark: {args.samples:,} samples indexed at the hub in {time.perf_counter() - started:.0f} s; "
            f"spoke {args.region.value}; {os.cpu_count()} cores",
            flush=True,
        )
        topic = feed_topic(args.region)
        with Publisher(work, env, intervals[0]) as publisher:
            started = time.perf_counter()
            row = complete_feed(publisher, args.region, args.samples, timeout=3600)
            # Counted, not taken from the end offsets: the publisher's commit markers take offsets
            # on the hub that MirrorMaker 2 does not copy.
            records = len(asyncio.run(read_records(hub, [topic], timeout=600, committed=True)))
            print(
                f"  hub: the publisher wrote every feed, {args.region.value}'s complete at revision "
                f"{row['published_revision']} ({records:,} records) in {time.perf_counter() - started:.1f} s",
                flush=True,
            )

            # Baseline: MirrorMaker 2 alone copies the complete feed to a fresh spoke broker.
            stack = StackSettings.fresh(work / "baseline", StateSettings().cache)
            plain = LocalSpoke(args.region, stack, work / "baseline-spoke")
            spokes.append(plain)
            plain.start_broker()
            plain_state = plain.broker.running()
            assert plain_state is not None
            copy = plain.broker.access(ADMIN, plain_state)
            started = time.perf_counter()
            plain.start_mirror(state.bootstrap, hub_state)

            def copied() -> bool:
                try:
                    return asyncio.run(records_on(copy, topic)) >= records
                except Exception:  # the topic is not on the spoke yet
                    return False

            until(copied, 3600, "MirrorMaker 2 to copy the feed", interval=0.2)
            baseline = time.perf_counter() - started
            print(
                f"  baseline: MirrorMaker 2 alone copied {records:,} records in {baseline:.1f} s", flush=True
            )
            plain.stop()

            # genomhub: MirrorMaker 2 and the spoke service, until the spoke shows it all.
            stack = StackSettings.fresh(work / "spoke", StateSettings().cache)
            spoke = LocalSpoke(args.region, stack, work / "genomhub-spoke")
            spokes.append(spoke)
            spoke.start_broker()
            spoke_token = new_token()
            spoke_env = {**env, "GENOMHUB_TOKENS": json.dumps({token_hash(spoke_token): args.region.value})}
            service = spoke.process(state.bootstrap, hub_state, spoke_env, GENOMHUB, work)
            started = time.perf_counter()
            spoke.start_mirror(state.bootstrap, hub_state)
            service.start()
            first: list[float] = []

            def shown_whole() -> bool:
                status, shown = get_json(spoke.port, "/v1/revision", spoke_token)
                if status != 200:
                    return False
                if not first:
                    first.append(time.perf_counter() - started)
                return bool(shown["upto"] >= row["published_upto"])

            until(shown_whole, 3600, "the spoke to show the whole feed", interval=0.1)
            ours = time.perf_counter() - started
            print(
                f"  genomhub: the spoke showed the verified revision of the whole feed in {ours:.1f} s "
                f"(first verified revision after {first[0]:.1f} s)\n"
                f"initial sync of {args.samples:,} samples: genomhub {ours:.1f} s, MirrorMaker 2 alone "
                f"{baseline:.1f} s: ratio {baseline / ours:.2f} (aim >= 0.5)",
                flush=True,
            )

        for n, interval in enumerate(intervals):
            with Publisher(work, env, interval) as publisher:
                complete_feed(publisher, args.region, args.samples, timeout=3600)
                # A restarted publisher reads the whole log again before it publishes: one change
                # seen on the spoke first says it is past that, and is not counted.
                warm = indexed(args.samples + 10**5 + n, args.region, prefix="W")
                asyncio.run(publish([(warm, f"bench-warm-{n}")], "/genomhub/indexer", principal="indexer"))
                warm_path = f"/v1/samples/{sample_key(args.region, warm.submission.sample_id)}"
                until(
                    partial(visible, spoke.port, warm_path, spoke_token),
                    600,
                    "the publisher to catch up",
                    0.1,
                )
                latencies = []
                for i in range(args.changes):
                    sample = indexed(args.samples + n * args.changes + i, args.region, prefix="L")
                    asyncio.run(
                        publish([(sample, f"bench-change-{n}-{i}")], "/genomhub/indexer", principal="indexer")
                    )
                    sent = time.perf_counter()
                    path = f"/v1/samples/{sample_key(args.region, sample.submission.sample_id)}"
                    until(partial(visible, spoke.port, path, spoke_token), 120, "the change", 0.02)
                    latencies.append(time.perf_counter() - sent)
                    time.sleep(args.gap)
                print(
                    f"change to spoke, checkpoint interval {interval:.1f} s ({args.changes} changes): "
                    f"p50 {statistics.median(latencies):.2f} s, p99 {percentile(latencies, 0.99):.2f} s, "
                    f"max {max(latencies):.2f} s (aim p99 < 5 s)",
                    flush=True,
                )
        service.signal(signal.SIGTERM)
        if service.proc is not None:
            service.proc.wait(30)
        print(f"load {os.getloadavg()[0]:.1f}")
    finally:
        for made in spokes:
            made.stop()
        broker.stop()
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
