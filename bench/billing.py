"""Benchmark of billing: accrue indexed events, then close a month.

Generates ``--events`` indexed events (default 1,000,000) over 12 months of 2025, weighted
over the five regions and their departments, with 5 % redeliveries of samples already seen
(the at-least-once bus and replays). Then, on a fresh database of ``--engine`` (SQLite file
by default; PostgreSQL from Debian's packages, fsync on, asynchronous commit):

- accrual through billing's own path, ``accrual_of`` + ``BillingStore.accrue`` (serialised
  transaction, closed-month check, upsert; one transaction per event, as the service commits
  before acknowledging), timed without the generation of the events;
- the same rows as a plain SQL ``INSERT ... ON CONFLICT (sample_id) DO UPDATE`` loop on the
  driver's connection, one transaction per event, into a second fresh database with the same
  schema, in the same run; the row values are prepared before the clock starts;
- the totals per billed month of both databases, which must agree;
- the close of January (statement with its lines, ledger debit), then of the other 11 months.

    .venv/bin/python bench/billing.py [--events 1000000] [--engine sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from services.billing.accrual import accrual_of  # noqa: E402
from services.billing.money import format_danish  # noqa: E402
from services.billing.store import BillingStore  # noqa: E402
from services.billing.tables import accruals  # noqa: E402
from shared.events import AnalysisType, Indexed, SampleStatus, Submission  # noqa: E402
from shared.synthetic import DEPARTMENTS  # noqa: E402

REGIONS = list(DEPARTMENTS)
REGION_WEIGHTS = [0.33, 0.15, 0.1, 0.22, 0.2]
ANALYSES = (
    [AnalysisType.WGS] * 12 + [AnalysisType.WES] * 5 + [AnalysisType.PANEL] * 2 + [AnalysisType.LONG_READ_WGS]
)
YEAR_START = datetime(2025, 1, 1, tzinfo=UTC)
CHUNK = 10_000
STANDARD_RATE_DKK = 300


def events(n: int, seed: int = 2026) -> Iterator[list[tuple[Indexed, str]]]:
    """``n`` indexed events in chunks; about 5 % redeliver a sample seen before."""
    rng = random.Random(seed)
    seen = 0
    for start in range(0, n, CHUNK):
        chunk = []
        for k in range(start, min(n, start + CHUNK)):
            if seen and rng.random() < 0.05:
                sample = rng.randrange(seen)
                r = random.Random(sample)  # the same sample has the same facts again
            else:
                sample = seen
                seen += 1
                r = random.Random(sample)
            region = r.choices(REGIONS, REGION_WEIGHTS)[0]
            accepted = r.random() > 0.03
            chunk.append(
                (
                    Indexed(
                        submission=Submission(
                            submission_id=f"{sample:032x}",  # the receiver's shape: 32 hex digits
                            region=region,
                            department=r.choice(DEPARTMENTS[region]),
                            sample_id=f"S{sample:08d}",
                            patient_id=f"P{sample:08d}",
                            analysis_type=r.choice(ANALYSES),
                            platform="ILLUMINA",
                            received_at=YEAR_START + timedelta(seconds=r.randrange(365 * 86400)),
                        ),
                        status=SampleStatus.HARMONISED if accepted else SampleStatus.REJECTED,
                        accepted=accepted,
                        genome_equivalents=Decimal(r.randrange(200_000, 1_600_000)) / 1_000_000,
                        files=4,
                    ),
                    f"evt-{k}",
                )
            )
        yield chunk


UPSERT = (
    "INSERT INTO billing_accruals (sample_id, submission_id, region, department, analysis_type, "
    "received_at, received_month, billed_month, ge_micro, event_id) VALUES ({p}) "
    "ON CONFLICT (sample_id) DO UPDATE SET submission_id = excluded.submission_id, "
    "region = excluded.region, department = excluded.department, analysis_type = excluded.analysis_type, "
    "received_at = excluded.received_at, received_month = excluded.received_month, "
    "billed_month = excluded.billed_month, ge_micro = excluded.ge_micro, event_id = excluded.event_id"
)


def plain_rows(chunk: list[tuple[Indexed, str]]) -> list[tuple[Any, ...]]:
    """The row values of each accepted event (prepared before the plain loop's clock starts)."""
    rows = []
    for event, event_id in chunk:
        a = accrual_of(event, event_id)
        if a is not None:
            rows.append(
                (
                    a.sample_id,
                    a.submission_id,
                    a.region.value,
                    a.department,
                    a.analysis_type.value,
                    a.received_at.astimezone(UTC).isoformat(),
                    a.received_month,
                    a.received_month,
                    a.ge_micro,
                    a.event_id,
                )
            )
    return rows


def month_totals(store: BillingStore) -> dict[str, tuple[int, int]]:
    with store.reading() as conn:
        rows = conn.execute(
            select(accruals.c.billed_month, func.count(), func.sum(accruals.c.ge_micro)).group_by(
                accruals.c.billed_month
            )
        ).all()
    return {str(m): (int(c), int(g)) for m, c, g in rows}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--engine", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="genomhub-bench-billing-"))
    server = None
    if args.engine == "sqlite":
        ours_url = f"sqlite:///{folder / 'billing.sqlite'}"
        plain_url = f"sqlite:///{folder / 'plain.sqlite'}"
    else:
        from tests.postgres import PostgresServer

        server = PostgresServer(durable=True).start()
        ours_url, plain_url = server.new_database("billing"), server.new_database("plain")
    try:
        ours = BillingStore(ours_url)
        plain = BillingStore(plain_url)  # the same schema; written below by plain SQL only
        raw = plain.engine.raw_connection()
        if args.engine == "sqlite":
            raw.driver_connection.isolation_level = None  # type: ignore[union-attr]
        sql = UPSERT.format(p=", ".join(["?" if args.engine == "sqlite" else "%s"] * 10))

        print(f"billing benchmark: {args.events:,} indexed events, {args.engine}")
        ours_s = plain_s = 0.0
        for chunk in events(args.events):
            started = time.perf_counter()
            for event, event_id in chunk:
                accrual = accrual_of(event, event_id)
                if accrual is not None:
                    ours.accrue(accrual)
            ours_s += time.perf_counter() - started

            rows = plain_rows(chunk)
            cursor = raw.cursor()
            started = time.perf_counter()
            for row in rows:
                if args.engine == "sqlite":
                    cursor.execute("BEGIN")
                cursor.execute(sql, row)
                raw.commit() if args.engine == "postgresql" else cursor.execute("COMMIT")
            plain_s += time.perf_counter() - started
            cursor.close()
        raw.close()

        mine, theirs = month_totals(ours), month_totals(plain)
        assert mine == theirs, f"the two accruals disagree:\n{mine}\n{theirs}"
        samples = sum(c for c, _ in mine.values())
        print(f"accrued samples: {samples:,} in {len(mine)} months (totals agree with the plain loop)")
        print(f"accrual, billing's path:       {ours_s:8.1f} s  {args.events / ours_s:9,.0f} events/s")
        print(f"accrual, plain INSERT ON CONFLICT: {plain_s:4.1f} s  {args.events / plain_s:9,.0f} events/s")
        print(f"ratio billing / plain:         {ours_s / plain_s:8.2f}x")

        now = datetime(2026, 2, 10, tzinfo=UTC)
        ours.add_to_grant(100_000_000_00, by="bench", at=now, note="a grant that covers the year")
        started = time.perf_counter()
        january = ours.close("2025-01", standard_rate_dkk=STANDARD_RATE_DKK, now=now, by="bench").statement
        close_s = time.perf_counter() - started
        print(
            f"close 2025-01: {close_s * 1000:8.1f} ms  ({january.samples:,} samples, {len(january.lines)} lines, "
            f"rate {january.rate_dkk} DKK, {format_danish(january.total_ore)})"
        )
        started = time.perf_counter()
        for month in range(2, 13):
            ours.close(f"2025-{month:02d}", standard_rate_dkk=STANDARD_RATE_DKK, now=now, by="bench")
        rest_s = time.perf_counter() - started
        print(
            f"close 2025-02..12: {rest_s * 1000 / 11:6.1f} ms per month; balance left {format_danish(ours.balance() or 0)}"
        )
        ours.dispose()
        plain.dispose()
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
