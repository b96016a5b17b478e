"""Crash safety: 50 submissions from the five regions while every service is SIGKILLed
at random moments and the broker restarts once. Nothing may be lost or counted twice.

This is the bounded run for ``make test``; ``bench/soak.py`` runs the long one.
"""

from __future__ import annotations

import asyncio
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select

from services.billing.tables import accruals
from services.demo import DemoTokens, report_sample, simulate_sample, stack_env, wait_until_accrued
from services.indexer.tables import files, samples, submissions
from shared.bus import read_records
from shared.config import Settings
from shared.database import make_engine
from shared.events import Region
from shared.topics import DLQ_SUFFIX, all_topics
from tests.e2e.conftest import stack_settings
from tools.stack.supervisor import SERVICES, LocalStack

SUBMISSIONS = 50


def reads_for(settings: Settings, work: Path, count: int) -> list[tuple[Region, str, list[Path]]]:
    regions = list(Region)
    plan = []
    for i in range(count):
        region = regions[i % len(regions)]
        sample = f"FAULT-{region.value[:3].upper()}-{i:03d}"
        plan.append(
            (region, sample, simulate_sample(settings.reference(), work, sample, seed=100 + i, coverage=0.3))
        )
    return plan


def upload_all(
    receiver: str, tokens: DemoTokens, plan: list[tuple[Region, str, list[Path]]], out: list[str]
) -> None:
    async def one(region: Region, sample: str, reads: list[Path], gate: asyncio.Semaphore) -> None:
        async with gate:
            out.append(
                await report_sample(
                    receiver, tokens.by_holder[region.value], region, sample, f"P-{sample}", reads
                )
            )

    async def every() -> None:
        gate = asyncio.Semaphore(3)
        await asyncio.gather(*(one(r, s, reads, gate) for r, s, reads in plan))

    asyncio.run(every())


def run_with_faults(
    stack: LocalStack, plan: list[tuple[Region, str, list[Path]]], tokens: DemoTokens, seed: int
) -> tuple[list[str], Counter[str]]:
    """Upload ``plan`` while killing each service at least once and restarting the broker."""
    assert stack.supervisor is not None
    rng = random.Random(seed)
    receiver = f"http://127.0.0.1:{stack.supervisor.services['receiver'].port}"
    sent: list[str] = []
    uploader = threading.Thread(target=upload_all, args=(receiver, tokens, plan, sent))
    uploader.start()
    faults = (
        [("kill", s) for s in SERVICES]
        + [("kill", rng.choice(SERVICES)) for _ in range(2)]
        + [("broker", "")]
    )
    rng.shuffle(faults)
    done: Counter[str] = Counter()
    for kind, service in faults:
        pause = time.monotonic() + rng.uniform(2.0, 6.0)
        while time.monotonic() < pause:
            stack.supervisor.poll()
            time.sleep(0.2)
        if kind == "kill":
            print(f"SIGKILL {service}")
            stack.supervisor.services[service].signal(signal.SIGKILL)
            done[service] += 1
        else:
            print("stopping the broker")
            stack.broker.stop()
            time.sleep(rng.uniform(1.0, 4.0))
            state, took = stack.broker.start()
            print(f"broker back at {state.bootstrap} in {took:.1f} s")
            done["broker"] += 1
    while uploader.is_alive():
        stack.supervisor.poll()
        uploader.join(0.5)
    return sent, done


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
            read_records(stack.bootstrap, [t.name for t in all_topics(1) if t.name.endswith(DLQ_SUFFIX)])
        )
        restarts = {name: s.restarts for name, s in stack.supervisor.services.items()}  # type: ignore[union-attr]

    catalogue = make_engine(settings.catalogue_database_url)
    with catalogue.connect() as db:
        submission_rows = db.execute(select(func.count()).select_from(submissions)).scalar_one()
        sample_rows = db.execute(select(func.count()).select_from(samples)).scalar_one()
        file_rows = db.execute(select(func.count()).select_from(files)).scalar_one()
        distinct_files = db.execute(
            select(func.count()).select_from(
                select(files.c.sample_id, files.c.role, files.c.name).distinct().subquery()
            )
        ).scalar_one()
    billing = make_engine(settings.billing_database_url)
    with billing.connect() as db:
        accrued = Counter(row.sample_id for row in db.execute(select(accruals.c.sample_id)))

    accepted = {sid for sid, o in outcomes.items() if o.accepted}
    indexed_once = sum(1 for o in outcomes.values() if len(o.event_ids) == 1)
    print(
        f"\nfaults: {dict(faults)}; restarts: {restarts}\n"
        f"submissions sent {len(sent)}, indexed {len(outcomes)}, indexed exactly once {indexed_once}\n"
        f"accepted {len(accepted)}, accrued samples {len(accrued)}, accrued more than once "
        f"{sum(1 for c in accrued.values() if c > 1)}\n"
        f"catalogue rows: submissions {submission_rows}, samples {sample_rows}, files {file_rows} "
        f"({distinct_files} distinct)\n"
        f"dead letters {len(dead)}"
    )
    assert all(faults[s] >= 1 for s in SERVICES) and faults["broker"] == 1
    assert all(restarts[s] >= 1 for s in SERVICES), restarts
    assert len(outcomes) == SUBMISSIONS and indexed_once == SUBMISSIONS
    assert len(accepted) == SUBMISSIONS, "every generated sample is good input"
    assert len(accrued) == SUBMISSIONS and set(accrued.values()) == {1}
    assert submission_rows == SUBMISSIONS and sample_rows == SUBMISSIONS
    assert file_rows == distinct_files
    assert dead == [], [(r.topic, dict(r.headers)) for r in dead]
