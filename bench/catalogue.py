"""Benchmark of the national catalogue on SQLite and PostgreSQL.

Builds a synthetic catalogue (default 100,000 samples with 1,000,000 files, one event each)
in a fresh SQLite file and a fresh PostgreSQL server (Debian's, started here; fsync on,
asynchronous commit, like SQLite's WAL with synchronous=NORMAL), through bulk inserts of the
very rows the indexer writes. Then, on each engine:

- query latency, p50 and p99 over ``--repeats`` calls with varied parameters, of the five
  commonest queries, through the same ``Catalogue`` methods the HTTP API calls (row fetch and
  response models included): samples of a region in a month; a sample by id (with its files);
  samples by status; a text search (half department names, half one patient's pseudonym);
  and the statistics per region, month and status;
- ingest: new harmonised events through the indexer's upsert path (``Catalogue.apply``: keep
  the event, fold the submission, upsert submission, files and sample: one transaction per
  event, as the service commits before acknowledging), next to raw inserts of the same rows,
  also one transaction per event, in the same run.

    .venv/bin/python bench/catalogue.py [--samples 100000] [--files 1000000]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from services.indexer import tables as t  # noqa: E402
from services.indexer.catalogue import CatalogueEvent, fold  # noqa: E402
from services.indexer.filters import SampleFilters, parse_query  # noqa: E402
from services.indexer.store import (  # noqa: E402
    Catalogue,
    event_row,
    file_rows,
    sample_row,
    submission_row,
)
from shared.events import Harmonised, Region, SampleStatus, Validated  # noqa: E402
from shared.synthetic import DEPARTMENTS  # noqa: E402
from tests.postgres import PostgresServer  # noqa: E402

REGION_WEIGHTS = [0.33, 0.15, 0.1, 0.22, 0.2]
ANALYSES = (["WGS"] * 12) + (["WES"] * 5) + (["panel"] * 2) + ["long-read WGS"]
OUTPUT_KINDS = ["cram", "crai", "vcf", "tbi", "gvcf", "gvcf.tbi", "multiqc", "mosdepth", "bcftools-stats"]
FIRST_MONTH = date(2024, 1, 1)
MONTHS = 26
CHUNK = 2000


def sha(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


def md5(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"


@dataclass
class Synthetic:
    """A deterministic synthetic catalogue: sample ``n`` has the same event in every run."""

    samples: int
    files: int
    seed: int = 7

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        self.statuses = [
            "rejected" if x < 0.1 else "failed" if x < 0.15 else "succeeded"
            for x in (rng.random() for _ in range(self.samples))
        ]
        harmonised = [n for n, s in enumerate(self.statuses) if s == "succeeded"]
        base, extra = divmod(max(0, self.files - 4 * self.samples), max(1, len(harmonised)))
        self.outputs = dict.fromkeys(harmonised, base) | {n: base + 1 for n in harmonised[:extra]}

    def event(self, n: int, prefix: str = "B") -> CatalogueEvent:
        rng = random.Random(n * 7919 + self.seed)
        region = rng.choices(list(Region), REGION_WEIGHTS)[0]
        month = FIRST_MONTH + timedelta(days=31 * (n % MONTHS))
        received = datetime(month.year, month.month, 1, tzinfo=UTC) + timedelta(
            seconds=rng.randrange(27 * 86400)
        )
        status = self.statuses[n % len(self.statuses)]
        sid = f"{prefix}-{n:07d}"
        submission = {
            "submission_id": f"{zlib.crc32(prefix.encode()):08x}{n:024x}",  # 32 hex digits
            "region": region.value,
            "department": rng.choice(DEPARTMENTS[region]),
            "sample_id": f"S-{sid}",
            "patient_id": f"P-{rng.getrandbits(40):013d}",  # an unbroken barcode-like run, never a CPR
            "analysis_type": rng.choice(ANALYSES),
            "platform": rng.choice(["ILLUMINA", "ILLUMINA", "MGI", "ONT"]),
            "received_at": received,
        }
        base = f"s3://ngc-archive/{region.value}/sub-{sid}"
        inputs = [
            {
                "name": name,
                "role": role,
                "url": f"{base}/{name}",
                "size": rng.randrange(10**9, 4 * 10**10),
                "sha256": sha(rng),
                "md5": md5(rng),
                "detected_type": kind,
                "metrics": {"reads": rng.randrange(10**8, 10**9), "bases": rng.randrange(10**10, 10**11)},
                "problems": [],
                "accepted": True,
            }
            for name, role, kind in (
                ("R1.fastq.gz", "raw_reads", "fastq.gz"),
                ("R2.fastq.gz", "raw_reads", "fastq.gz"),
                ("clinical.cram", "clinical_output", "cram"),
                ("clinical.vcf.gz", "clinical_output", "vcf.gz"),
            )
        ]
        ge = Decimal(rng.randrange(900_000, 1_200_000)) / 1_000_000
        data: Validated | Harmonised
        if status == "rejected":
            inputs[0]["accepted"] = False
            inputs[0]["problems"] = [{"code": "fastq.truncated", "message": "gzip stream ends early"}]
            data = Validated.model_validate(
                {
                    "submission": submission,
                    "verdict": "rejected",
                    "files": inputs,
                    "reference_profile": "GRCh38",
                    "genome_equivalents": ge,
                    "raw_bases": 93 * 10**9,
                    "raw_reads": 6 * 10**8,
                    "harmonisation": {"policy": "harmonise-and-store", "needs_harmonisation": False},
                }
            )
        else:
            count = self.outputs.get(n, 0)
            outputs = [
                {
                    "name": f"sarek/S-{sid}.{OUTPUT_KINDS[i % len(OUTPUT_KINDS)]}.{i}",
                    "kind": OUTPUT_KINDS[i % len(OUTPUT_KINDS)],
                    "url": f"{base}/sarek/{i}",
                    "size": rng.randrange(10**6, 10**10),
                    "sha256": sha(rng),
                    "provenance": "nf-core/sarek 3.5.1",
                }
                for i in range(count)
            ]
            data = Harmonised.model_validate(
                {
                    "submission": submission,
                    "status": status,
                    "files": inputs,
                    "genome_equivalents": ge,
                    "raw_bases": 93 * 10**9,
                    "outputs": outputs,
                    "provenance": {
                        "pipeline": "nf-core/sarek",
                        "pipeline_version": "3.5.1",
                        "reference": "GRCh38",
                        "duration_s": 3600.0,
                    },
                    "attempts": 1,
                }
            )
        return CatalogueEvent(
            id=f"ev-{sid}",
            time=received + timedelta(hours=6),
            source="/genomhub/harmoniser",
            trace_id=f"{rng.getrandbits(128):032x}",
            data=data,
        )


Rows = dict[str, list[dict[str, Any]]]


def rows_of(events: list[CatalogueEvent]) -> Rows:
    """The rows the indexer would write for each (first and only) event of a submission."""
    out: Rows = {"events": [], "submissions": [], "files": [], "samples": []}
    for event in events:
        record = fold([event])
        sub = submission_row(record)
        files = file_rows(record)
        out["events"].append(event_row(event))
        out["submissions"].append(sub)
        out["files"].extend(files)
        out["samples"].append(sample_row(sub, len(files), 1))
    return out


def bulk_insert(catalogue: Catalogue, rows: Rows) -> None:
    with catalogue.engine.begin() as conn:
        conn.execute(t.events.insert(), rows["events"])
        conn.execute(t.submissions.insert(), rows["submissions"])
        conn.execute(t.files.insert(), rows["files"])
        conn.execute(t.samples.insert(), rows["samples"])


def build(catalogues: dict[str, Catalogue], synthetic: Synthetic) -> dict[str, float]:
    took = dict.fromkeys(catalogues, 0.0)
    took["generate"] = 0.0
    for start in range(0, synthetic.samples, CHUNK):
        began = time.perf_counter()
        rows = rows_of([synthetic.event(n) for n in range(start, min(start + CHUNK, synthetic.samples))])
        took["generate"] += time.perf_counter() - began
        for name, catalogue in catalogues.items():
            began = time.perf_counter()
            bulk_insert(catalogue, rows)
            took[name] += time.perf_counter() - began
        done = min(start + CHUNK, synthetic.samples)
        if done % 20_000 == 0:
            print(
                f"  built {done:,} samples  ({', '.join(f'{k} {v:.0f} s' for k, v in took.items())})",
                flush=True,
            )
    for catalogue in catalogues.values():
        with catalogue.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    return took


def filters(**params: str) -> SampleFilters:
    return parse_query(SampleFilters, params, set())


def month_bounds(index: int) -> tuple[str, str]:
    first = FIRST_MONTH + timedelta(days=31 * index)
    first = first.replace(day=1)
    nxt = (first + timedelta(days=32)).replace(day=1)
    return first.isoformat(), (nxt - timedelta(days=1)).isoformat()


Query = Callable[[Catalogue], Any]


def searching(f: SampleFilters) -> Query:
    return lambda c: c.search(f)


def fetching(region: Region, sample_id: str) -> Query:
    return lambda c: c.sample(region, sample_id)


def counting() -> Query:
    return lambda c: c.stats()


def query_cases(synthetic: Synthetic, repeats: int) -> dict[str, list[Query]]:
    rng = random.Random(3)
    regions = [r.value for r in Region]
    departments = [d for ds in DEPARTMENTS.values() for d in ds]
    cases: dict[str, list[Query]] = {k: [] for k in QUERIES}
    for i in range(repeats):
        start, end = month_bounds(rng.randrange(MONTHS))
        cases["region + month"].append(
            searching(filters(region=regions[i % 5], received_from=start, received_to=end))
        )
        fetched = synthetic.event(rng.randrange(synthetic.samples)).submission
        cases["sample by id"].append(fetching(fetched.region, fetched.sample_id))
        cases["by status"].append(searching(filters(status=[s.value for s in SampleStatus][i % 3])))
        if i % 2:
            patient = synthetic.event(rng.randrange(synthetic.samples)).submission.patient_id
            cases["text search"].append(searching(filters(q=patient.lower())))
        else:
            cases["text search"].append(searching(filters(q=rng.choice(departments)[:8])))
        cases["stats"].append(counting())
    return cases


QUERIES = ("region + month", "sample by id", "by status", "text search", "stats")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(catalogue: Catalogue, calls: list[Callable[[Catalogue], Any]]) -> tuple[float, float]:
    for call in calls[:5]:  # warm the cache, as a running service has it
        call(catalogue)
    times = []
    for call in calls:
        began = time.perf_counter()
        result = call(catalogue)
        times.append((time.perf_counter() - began) * 1000)
        if result is None:
            raise AssertionError("a benchmark query found nothing: the synthetic ids are wrong")
    return percentile(times, 0.5), percentile(times, 0.99)


def raw_insert(catalogue: Catalogue, rows: Rows) -> None:
    """The baseline: the same rows, plain INSERTs, one transaction per event."""
    with catalogue.engine.begin() as conn:
        conn.execute(t.events.insert(), rows["events"][0])
        conn.execute(t.submissions.insert(), rows["submissions"][0])
        conn.execute(t.files.insert(), rows["files"])
        conn.execute(t.samples.insert(), rows["samples"][0])


def ingest(catalogue: Catalogue, synthetic: Synthetic, count: int, tag: str) -> tuple[float, float]:
    upsert_events = [synthetic.event(n, prefix=f"U{tag}") for n in range(count)]
    raw_rows = [rows_of([synthetic.event(n, prefix=f"R{tag}")]) for n in range(count)]
    began = time.perf_counter()
    for event in upsert_events:
        catalogue.apply(event)
    upsert_rate = count / (time.perf_counter() - began)
    began = time.perf_counter()
    for rows in raw_rows:
        raw_insert(catalogue, rows)
    raw_rate = count / (time.perf_counter() - began)
    return upsert_rate, raw_rate


def engines(folder: Path, server: PostgresServer | None) -> Iterator[tuple[str, Catalogue]]:
    yield "sqlite", Catalogue(f"sqlite:///{folder / 'catalogue.sqlite'}")
    if server is not None:
        yield "postgresql", Catalogue(server.new_database("bench"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=200, help="Calls per query kind.")
    parser.add_argument("--ingest", type=int, default=1000, help="Events per ingest path.")
    parser.add_argument("--engines", default="sqlite,postgresql")
    args = parser.parse_args()
    only = args.engines.split(",")

    synthetic = Synthetic(args.samples, args.files)
    server = PostgresServer(durable=True).start() if "postgresql" in only else None
    try:
        with tempfile.TemporaryDirectory(prefix="genomhub-bench-") as tmp:
            catalogues = {k: v for k, v in engines(Path(tmp), server) if k in only}
            for catalogue in catalogues.values():
                catalogue.migrate()
            print(f"building {args.samples:,} samples / {args.files:,} files on {', '.join(catalogues)} ...")
            took = build(catalogues, synthetic)
            with next(iter(catalogues.values())).engine.connect() as conn:
                nfiles = conn.execute(text("SELECT count(*) FROM catalogue_files")).scalar_one()
            print(
                f"built {args.samples:,} samples, {nfiles:,} files: generating rows {took['generate']:.0f} s, "
                + ", ".join(f"bulk insert into {k} {took[k]:.0f} s" for k in catalogues)
            )
            cases = query_cases(synthetic, args.repeats)
            results: dict[str, dict[str, tuple[float, float]]] = {}
            for name, catalogue in catalogues.items():
                results[name] = {q: measure(catalogue, cases[q]) for q in QUERIES}
            header = f"{'query (ms)':<16}" + "".join(f"{n + ' p50':>16}{n + ' p99':>16}" for n in catalogues)
            print(header)
            for q in QUERIES:
                print(
                    f"{q:<16}"
                    + "".join(f"{results[n][q][0]:>16.2f}{results[n][q][1]:>16.2f}" for n in catalogues)
                )
            print(f"ingest, {args.ingest:,} events per path, into the {args.samples:,}-sample catalogue:")
            for name, catalogue in catalogues.items():
                upsert_rate, raw_rate = ingest(catalogue, synthetic, args.ingest, name[0])
                print(
                    f"  {name:<11} indexer upsert path {upsert_rate:8.0f} events/s   "
                    f"raw inserts {raw_rate:8.0f} events/s   ratio {upsert_rate / raw_rate:.2f}"
                )
            for catalogue in catalogues.values():
                catalogue.close()
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
