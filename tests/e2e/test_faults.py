"""Crash safety: 50 submissions from the five regions while every service is SIGKILLed
at random moments and the broker restarts once. Nothing may be lost or counted twice.

This is the bounded run for ``make test``; ``bench/soak.py`` runs the long one.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select

from services.billing.tables import accruals
from services.indexer.tables import files, samples, submissions
from shared.bus import read_records
from shared.config import BillingSettings, IndexerSettings
from shared.database import make_engine
from shared.topics import DLQ_SUFFIX, SERVICES, all_topics
from tests.e2e.conftest import stack_settings
from tools.stack.demo import DemoTokens, stack_env, wait_until_accrued
from tools.stack.faults import reads_for, run_with_faults
from tools.stack.supervisor import LocalStack

SUBMISSIONS = 50


def test_nothing_lost_or_counted_twice_under_crashes(tmp_path: Path) -> None:
    settings = stack_settings(tmp_path)
    tokens = DemoTokens.make()
    env = {
        **stack_env(tokens),
        "GENOMHUB_HARMONISER_CONCURRENCY": "2",
        "GENOMHUB_HARMONISER_RETRY_DELAY": "2",
    }
    plan = reads_for(settings, tmp_path / "reads", SUBMISSIONS)
    with LocalStack(settings, env=env, jaeger=False, say=print) as stack:
        stack.wait_ready()
        sent, faults = run_with_faults(stack, plan, tokens, seed=20260217)
        assert len(set(sent)) == SUBMISSIONS, "every upload was sealed"
        outcomes = wait_until_accrued(stack, sent, timeout=900)
        dead = asyncio.run(
            read_records(stack.operator, [t.name for t in all_topics(1) if t.name.endswith(DLQ_SUFFIX)])
        )
        restarts = {name: s.restarts for name, s in stack.supervisor.services.items()}  # type: ignore[union-attr]

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

    accepted = {sid for sid, o in outcomes.items() if o.accepted}
    indexed_once = sum(1 for o in outcomes.values() if len(o.event_ids) == 1)
    print(
        f"\nfaults: {dict(faults)}; restarts: {restarts}\n"
        f"submissions sent {len(sent)}, indexed {len(outcomes)}, indexed exactly once {indexed_once}\n"
        f"accepted {len(accepted)}, accrued samples {len(accrued)}, accrued more than once "
        f"{sum(1 for c in accrued.values() if c > 1)}\n"
        f"catalogue rows: submissions {submission_rows}, samples {sample_rows}, files {file_rows} "
        f"({distinct_files} distinct)\n"
        f"dead letters {len(dead)}: {[(r.topic, dict(r.headers).get('genomhub_dlq_error')) for r in dead]}"
    )
    assert all(faults[s] >= 1 for s in SERVICES) and faults["broker"] == 1
    assert all(restarts[s] >= 1 for s in SERVICES), restarts
    assert len(outcomes) == SUBMISSIONS and indexed_once == SUBMISSIONS
    assert len(accepted) == SUBMISSIONS, "every generated sample is good input"
    assert len(accrued) == SUBMISSIONS and set(accrued.values()) == {1}
    assert submission_rows == SUBMISSIONS and sample_rows == SUBMISSIONS
    assert file_rows == distinct_files
    assert dead == [], [(r.topic, dict(r.headers)) for r in dead]
