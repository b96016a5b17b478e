"""Benchmark of the signed catalogue feed, without Kafka: what signing and verifying cost.

Projects ``--samples`` summaries (default 60,000, the issue's initial sync) for one spoke,
then, in the same run:

- the baseline: each body serialised to canonical JSON and parsed back (what any feed would
  pay to carry the same bodies), timed;
- the hub's side: ``FeedWriter.publish`` (numbering, Ed25519 signature, state hash update)
  for every sample and a checkpoint every ``--every`` entries, timed;
- the spoke's side: ``FeedVerifier.receive`` of every record, partitions interleaved as a
  consumer sees them (parse, signature check, order checks, and at each checkpoint the
  state hash of the whole candidate state), timed; the first revision's delay is printed;
- a check that the spoke's state hash equals the hub's.

    .venv/bin/python bench/feed.py [--samples 60000] [--every 1000] [--partitions 3]

On a shared machine the figures are loaded-machine figures: compare the ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from services.publisher.writer import FeedWriter, Record  # noqa: E402
from services.spoke.verifier import FeedVerifier  # noqa: E402
from shared.envelope import canonical_json  # noqa: E402
from shared.events import AnalysisType, Region, SampleStatus, Verdict  # noqa: E402
from shared.feed import SampleSummary  # noqa: E402

SPOKE = Region.SYDDANMARK
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def bodies(n: int) -> list[SampleSummary]:
    regions = [r for r in Region if r != SPOKE]
    return [
        SampleSummary(
            region=regions[i % len(regions)],
            sample_id=f"S{i:06d}",
            analysis_type=AnalysisType.WGS,
            qc=Verdict.ACCEPTED,
            status=SampleStatus.HARMONISED,
            genome_equivalents=Decimal("1.000000"),
            files=2 + i % 5,
            received_month=f"2026-{1 + i % 11:02d}",
        )
        for i in range(n)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--every", type=int, default=1000)
    parser.add_argument("--partitions", type=int, default=3)
    args = parser.parse_args()
    made = bodies(args.samples)

    started = time.perf_counter()
    for body in made:
        json.loads(canonical_json(body.model_dump(mode="json")))
    baseline = time.perf_counter() - started

    writer = FeedWriter(SPOKE, Ed25519PrivateKey.generate(), args.partitions, every=args.every)
    records: list[Record] = []
    started = time.perf_counter()
    for body in made:
        record = writer.publish(body, NOW)
        assert record is not None
        records.append(record)
        if writer.due(NOW):
            records.append(writer.checkpoint(NOW))
    if writer.due(NOW):
        records.append(writer.checkpoint(NOW))
    hub = time.perf_counter() - started

    lanes = [[r for r in records if r.partition == p] for p in range(args.partitions)]
    interleaved = [r for group in zip(*lanes, strict=False) for r in group]
    interleaved += [r for lane in lanes for r in lane[len(min(lanes, key=len)) :]]
    spoke = FeedVerifier(SPOKE, writer.key.public_key())
    first_revision = None
    started = time.perf_counter()
    for r in interleaved:
        outcome = spoke.receive(r.partition, r.key, r.value)
        assert not outcome.refused, outcome.refused
        if outcome.revision is not None and first_revision is None:
            first_revision = time.perf_counter() - started
    verified = time.perf_counter() - started
    assert spoke.state_hash() == writer.state_hash() and spoke.visible_revision == writer.revision

    n = args.samples
    print(f"{n} samples, {len(records)} records, checkpoint every {args.every}, {args.partitions} partitions")
    print("(loaded machine: other work shares its 2 cores)")
    print(f"baseline  serialise + parse   {baseline:7.2f} s  {n / baseline:9.0f} bodies/s")
    print(
        f"hub       project+sign+hash   {hub:7.2f} s  {n / hub:9.0f} entries/s  ({hub / baseline:.1f}x baseline)"
    )
    print(
        f"spoke     verify+prove        {verified:7.2f} s  {n / verified:9.0f} entries/s  "
        f"({verified / baseline:.1f}x baseline)"
    )
    print(f"first verified revision after {first_revision or 0:.2f} s of the spoke's reading")
    print(f"revision {spoke.visible_revision}, state hash {spoke.state_hash()[:16]}... equal on both sides")


if __name__ == "__main__":
    main()
