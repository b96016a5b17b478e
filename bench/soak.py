"""Soak: the fault test's run, longer. Many submissions while services are SIGKILLed again
and again and the broker restarts several times; then the same exactly-once checks.

    .venv/bin/python bench/soak.py [--submissions 300] [--rounds 4] [--replicas 2] [--seed N]

With ``--replicas N`` every service runs as N replicas behind its balancer, as the fault
test runs them: every replica is killed in every round, aimed kills land mid-upload and
mid-harmonisation, and the month is closed at the end while a billing replica is killed.

Prints the fault counts, the restarts and the checks' figures, and the wall time per
submission against the baseline of the same number of submissions with no faults
(``--baseline`` runs that first in the same invocation).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select

from services.billing.tables import accruals, statements
from services.indexer.tables import files, samples, submissions
from shared.bus import read_records
from shared.config import BillingSettings, IndexerSettings, StateSettings
from shared.database import make_engine
from shared.events import month_of
from shared.topics import DLQ_SUFFIX, all_topics
from tools.stack.demo import DemoTokens, stack_env, wait_until_accrued
from tools.stack.environment import StackSettings
from tools.stack.faults import (
    FAULT_RUN_ENV,
    FaultRun,
    close_month_under_fault,
    pipeline_completions,
    reads_for,
    run_with_faults,
    upload_all,
    uploads_not_identical,
)
from tools.stack.supervisor import LocalStack


def one_run(count: int, rounds: int, seed: int, faults: bool, replicas: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="genomhub-soak-") as tmp:
        work = Path(tmp)
        settings = StackSettings.fresh(work / "home", StateSettings().cache)
        tokens = DemoTokens.make()
        env = {
            **stack_env(tokens),
            **FAULT_RUN_ENV,
        }
        plan = reads_for(settings, work / "reads", count)
        started = time.monotonic()
        month = month_of(datetime.now(UTC))
        with LocalStack(settings, env=env, jaeger=False, say=lambda _: None, replicas=replicas) as stack:
            stack.wait_ready()
            run = FaultRun()
            if faults:
                share = (len(plan) + rounds - 1) // rounds
                for r in range(rounds):
                    run += run_with_faults(stack, plan[r * share : (r + 1) * share], tokens, seed + r)
            else:
                upload_all(f"http://127.0.0.1:{stack.port_of('receiver')}", tokens, plan, run.sent)
            sent = run.sent
            outcomes = wait_until_accrued(stack, sent, timeout=3600, say=lambda _: None)
            national = {**os.environ, **env, "GENOMHUB_HOME": str(settings.state_dir)}
            national["GENOMHUB_KAFKA_BOOTSTRAP"] = stack.bootstrap
            if faults:
                close_month_under_fault(stack, month, national, random.Random(seed), run.faults)
            completions = pipeline_completions(stack)
            dead = asyncio.run(
                read_records(stack.operator, [t.name for t in all_topics(1) if t.name.endswith(DLQ_SUFFIX)])
            )
            restarts = {n: s.restarts for n, s in stack.supervisor.services.items()}  # type: ignore[union-attr]
        wall = time.monotonic() - started
        with make_engine(IndexerSettings(state=settings.state).database_url).connect() as db:
            rows = {
                t.name: db.execute(select(func.count()).select_from(t)).scalar_one()
                for t in (submissions, samples, files)
            }
        with make_engine(BillingSettings(state=settings.state).database_url).connect() as db:
            accrued = Counter(
                (r.region, r.sample_id) for r in db.execute(select(accruals.c.region, accruals.c.sample_id))
            )
            month_statements = db.execute(
                select(func.count()).select_from(statements).where(statements.c.month == month)
            ).scalar_one()
        not_identical = uploads_not_identical(settings, plan)
    return {
        "submissions": len(set(sent)),
        "indexed_exactly_once": sum(1 for o in outcomes.values() if len(o.event_ids) == 1),
        "accrued": len(accrued),
        "accrued_twice": sum(1 for c in accrued.values() if c > 1),
        "catalogue_rows": rows,
        "dead_letters": len(dead),
        "uploads_retried": sum(len(names) for names in run.retried.values()),
        "uploads_not_identical": len(not_identical),
        "pipelines_run_twice": sum(1 for c in completions.values() if c > 1),
        "statements_of_closed_month": month_statements if faults else None,
        "faults": dict(run.faults),
        "restarts": restarts,
        "seconds": round(wall, 1),
        "seconds_per_submission": round(wall / max(count, 1), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--submissions", type=int, default=300)
    parser.add_argument(
        "--rounds",
        type=int,
        default=4,
        help="Fault rounds: each kills every service and restarts the broker.",
    )
    parser.add_argument(
        "--replicas", type=int, default=1, help="Processes of each service (the fault test: 2)."
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--baseline", action="store_true", help="First run the same load with no faults.")
    args = parser.parse_args()
    if args.baseline:
        base = one_run(args.submissions, 0, args.seed, faults=False, replicas=args.replicas)
        print(f"baseline (no faults): {base}")
    soak = one_run(args.submissions, args.rounds, args.seed, faults=True, replicas=args.replicas)
    print(f"soak ({args.rounds} fault rounds): {soak}")
    ok = (
        soak["indexed_exactly_once"] == soak["submissions"] == soak["accrued"] == args.submissions
        and soak["accrued_twice"] == 0
        and soak["dead_letters"] == 0
        and soak["uploads_not_identical"] == 0
        and soak["pipelines_run_twice"] == 0
        and soak["statements_of_closed_month"] == 1
    )
    print("exactly-once checks:", "passed" if ok else "FAILED")
    if args.baseline:
        ratio = float(soak["seconds"]) / max(float(base["seconds"]), 1e-9)  # type: ignore[arg-type]
        print(f"wall time with faults / without: {ratio:.2f}")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
