"""Crash safety with two replicas of every service: 50 submissions from the five regions
while every replica is SIGKILLed at least once at random moments, one of them while it holds
a PUT, one while a harmonisation job of its own runs and one while the month is being
closed, and the broker restarts once. Nothing may be lost, counted twice or run twice, and a
spoke's feed, whose writer was killed too, still verifies whole.

Leases are short here (receiver 3 s, harmoniser 6 s with a heartbeat every second) so a
dead replica's work is taken over within the test. This is the bounded run for
``make test``; ``bench/soak.py --replicas 2`` runs the long one.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from services.billing.refund import Statement
from services.billing.tables import accruals, statements
from services.harmoniser.jobs import jobs
from services.indexer.tables import files, samples, submissions
from shared.bus import read_records
from shared.config import BillingSettings, HarmoniserSettings, HubKeySettings, IndexerSettings
from shared.database import make_engine
from shared.envelope import normalise_headers
from shared.events import Harmonised, RefundCalculated, Region, month_of
from shared.topics import DLQ_SUFFIX, SERVICES, all_topics, topic_name
from tests.e2e.conftest import stack_settings
from tests.support import FeedReading
from tools.stack.demo import DemoTokens, stack_env, wait_until_accrued
from tools.stack.faults import (
    FAULT_RUN_ENV,
    MID_CLOSE,
    MID_HARMONISATION,
    MID_UPLOAD,
    close_month_under_fault,
    pipeline_completions,
    reads_for,
    run_with_faults,
    uploads_not_identical,
)
from tools.stack.supervisor import LocalStack

SUBMISSIONS = 50
REPLICAS = 2


def event_ids_by(records: list[Any], key: str) -> dict[str, set[str]]:
    """Per value of the event's ``key`` field: the distinct event ids (``ce_id``) sent for it."""
    found: dict[str, set[str]] = {}
    for record in records:
        headers = dict(normalise_headers(record.headers))
        value = json.loads(record.value)
        for part in key.split("."):
            value = value[part]
        found.setdefault(str(value), set()).add(headers.get("ce_id", b"").decode())
    return found


def test_nothing_lost_doubled_or_run_twice_under_crashes_of_two_replicas(tmp_path: Path) -> None:
    settings = stack_settings(tmp_path)
    tokens = DemoTokens.make()
    env = {
        **stack_env(tokens),
        **FAULT_RUN_ENV,
    }
    plan = reads_for(settings, tmp_path / "reads", SUBMISSIONS)
    month = month_of(datetime.now(UTC))
    with LocalStack(settings, env=env, jaeger=False, say=print, replicas=REPLICAS) as stack:
        stack.wait_ready()
        run = run_with_faults(stack, plan, tokens, seed=20260217)
        assert len(set(run.sent)) == SUBMISSIONS, "every upload was sealed"
        outcomes = wait_until_accrued(stack, run.sent, timeout=900)
        national = {**os.environ, **env, "GENOMHUB_HOME": str(settings.state_dir)}
        national["GENOMHUB_KAFKA_BOOTSTRAP"] = stack.bootstrap
        closes = close_month_under_fault(stack, month, national, random.Random(20260217), run.faults)
        dead = asyncio.run(
            read_records(stack.operator, [t.name for t in all_topics(1) if t.name.endswith(DLQ_SUFFIX)])
        )
        harmonised = event_ids_by(
            asyncio.run(read_records(stack.operator, [topic_name(Harmonised)])), "submission.submission_id"
        )
        refunds = event_ids_by(
            asyncio.run(read_records(stack.operator, [topic_name(RefundCalculated)])), "month"
        )
        restarts = {name: s.restarts for name, s in stack.supervisor.services.items()}  # type: ignore[union-attr]
        processes = list(restarts)
        completions = pipeline_completions(stack)
        # The publishers were killed too: a spoke's feed still verifies, to a revision of every
        # sample, with nothing refused (no number doubled, no entry lost or replayed).
        feed = FeedReading(
            stack.operator, Region.SYDDANMARK, HubKeySettings(state=settings.state).public_path()
        )
        mirrored = feed.sees(lambda revision: len(revision.samples) == SUBMISSIONS, timeout=120)

    catalogue = make_engine(IndexerSettings(state=settings.state).database_url)
    with catalogue.connect() as db:
        submission_rows = db.execute(select(func.count()).select_from(submissions)).scalar_one()
        sample_rows = db.execute(select(func.count()).select_from(samples)).scalar_one()
        file_rows = db.execute(select(func.count()).select_from(files)).scalar_one()
        distinct_files = db.execute(
            select(func.count()).select_from(
                select(files.c.region, files.c.sample_id, files.c.role, files.c.name).distinct().subquery()
            )
        ).scalar_one()
    billing = make_engine(BillingSettings(state=settings.state).database_url)
    with billing.connect() as db:
        # A sample is (region, pseudonym), in billing as in the catalogue.
        accrued = Counter(
            (row.region, row.sample_id) for row in db.execute(select(accruals.c.region, accruals.c.sample_id))
        )
        documents = (
            db.execute(select(statements.c.document).where(statements.c.month == month)).scalars().all()
        )
    closed = [Statement.from_document(json.loads(doc)) for doc in documents]
    with make_engine(HarmoniserSettings(state=settings.state).database_url).connect() as db:
        job_rows = db.execute(select(jobs.c.submission_id, jobs.c.state, jobs.c.attempts)).all()

    accepted = {sid for sid, o in outcomes.items() if o.accepted}
    indexed_once = sum(1 for o in outcomes.values() if len(o.event_ids) == 1)
    retried = {(key, name) for key, names in run.retried.items() for name in names}
    not_identical = uploads_not_identical(settings, plan)
    print(
        f"\nfaults: {dict(run.faults)}; restarts: {restarts}\n"
        f"submissions sent {len(run.sent)}, indexed {len(outcomes)}, indexed exactly once {indexed_once}\n"
        f"accepted {len(accepted)}, accrued samples {len(accrued)}, accrued more than once "
        f"{sum(1 for c in accrued.values() if c > 1)}\n"
        f"catalogue rows: submissions {submission_rows}, samples {sample_rows}, files {file_rows} "
        f"({distinct_files} distinct)\n"
        f"uploads the client retried {len(retried)}; files not byte-identical {not_identical}\n"
        f"jobs {len(job_rows)}, attempts {Counter(r.attempts for r in job_rows)}, "
        f"pipelines run to completion per job {Counter(completions.values())}\n"
        f"month {month}: statements {[(c.statement_id, c.samples) for c in closed]}, refund events {refunds.get(month)}; closes {closes}\n"
        f"dead letters {len(dead)}: {[(r.topic, dict(r.headers).get('genomhub_dlq_error')) for r in dead]}\n"
        f"syddanmark's feed: revision {mirrored.revision} of {len(mirrored.samples)} samples, "
        f"refused {[r.reason for r in feed.refused]}"
    )
    assert all(run.faults[p] >= 1 for p in processes), (processes, run.faults)
    assert all(run.faults[s] >= REPLICAS for s in SERVICES) and run.faults["broker"] == 1
    assert run.faults[MID_UPLOAD] >= 1 and run.faults[MID_HARMONISATION] >= 1 and run.faults[MID_CLOSE] >= 1
    assert all(restarts[p] >= 1 for p in processes), restarts
    assert len(outcomes) == SUBMISSIONS and indexed_once == SUBMISSIONS
    assert len(accepted) == SUBMISSIONS, "every generated sample is good input"
    assert len(accrued) == SUBMISSIONS and set(accrued.values()) == {1}
    assert submission_rows == SUBMISSIONS and sample_rows == SUBMISSIONS
    assert file_rows == distinct_files
    assert retried, "a kill mid-upload makes the client retry"
    assert not_identical == [], not_identical
    assert len(job_rows) == SUBMISSIONS and {r.state for r in job_rows} == {"succeeded"}
    assert set(completions) == {r.submission_id for r in job_rows} and set(completions.values()) == {1}
    assert len(harmonised) == SUBMISSIONS and all(len(ids) == 1 for ids in harmonised.values())
    assert len(closed) == 1 and closed[0].samples == SUBMISSIONS, "one statement, paying every sample"
    assert len(refunds.get(month, set())) == 1, refunds
    assert dead == [], [(r.topic, dict(r.headers)) for r in dead]
    assert len(mirrored.samples) == SUBMISSIONS and feed.refused == [], [str(r) for r in feed.refused]
