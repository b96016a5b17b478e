"""Driving a local stack through faults: uploads from the five regions while services are
SIGKILLed at random moments and the broker restarts. The fault test and the soak benchmark
share it.

With replicas, every replica is killed at least once, and three kills are aimed at the
moments a replica holds work another must take over: a receiver replica while it holds a
PUT (its file's lease in the receiver's database), a harmoniser replica while a job of its
own runs (the job table's owner), and a billing replica while a month is being closed
(:func:`close_month_under_fault`). Who holds what is read from the services' own databases,
by the pid each replica writes into its lease, so the aim is the one production would miss.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Engine

from services.harmoniser.jobs import jobs, pid_of
from services.receiver.api import SEAL_LOCK
from services.receiver.state import files as received_files
from services.receiver.state import leases as receiver_leases
from services.receiver.state import submissions as received_submissions
from shared.config import ArchiveKeySettings, ArchiveSettings, HarmoniserSettings, ReceiverSettings
from shared.database import make_engine
from shared.events import Region
from shared.storage import ArchiveReader
from shared.topics import SERVICES
from tools.stack.demo import DemoTokens, report_sample, simulate_sample
from tools.stack.environment import StackSettings
from tools.stack.supervisor import LocalStack, Supervised

Plan = list[tuple[Region, str, list[Path]]]

MID_UPLOAD = "mid-upload"
MID_HARMONISATION = "mid-harmonisation"
MID_CLOSE = "mid-close"
FAULT_RUN_ENV = {
    "GENOMHUB_RECEIVER_LEASE_SECONDS": "3",
    "GENOMHUB_HARMONISER_LEASE": "6",
    "GENOMHUB_HARMONISER_HEARTBEAT_INTERVAL": "1",
    "GENOMHUB_HARMONISER_CONCURRENCY": "2",
    "GENOMHUB_HARMONISER_RETRY_DELAY": "2",
    "GENOMHUB_BILLING_OPENING_BALANCE_DKK": "100000",
}
"""The stack's settings for a run under faults: leases short enough that a killed replica's
files and jobs are taken over within the run, and a grant, so the month can be closed."""
AIM_TIMEOUT = 60.0
"""How long an aimed kill waits for its moment (a PUT held, a job running) before it is
counted as missed; the test then fails on the missing count rather than hanging."""


@dataclass
class FaultRun:
    """What a run under faults sent and did: ``faults`` counts kills per service, per process
    (``receiver-1``), per aimed moment (:data:`MID_UPLOAD` ...) and broker restarts;
    ``retried`` names, per (region, sample), the files whose upload the client retried."""

    sent: list[str] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    retried: dict[tuple[str, str], set[str]] = field(default_factory=dict)

    def __iadd__(self, other: FaultRun) -> FaultRun:
        self.sent += other.sent
        self.faults += other.faults
        self.retried.update(other.retried)
        return self


def reads_for(settings: StackSettings, work: Path, count: int) -> Plan:
    regions = list(Region)
    plan = []
    for i in range(count):
        region = regions[i % len(regions)]
        sample = f"FAULT-{region.value[:3].upper()}-{i:03d}"
        plan.append(
            (region, sample, simulate_sample(settings.reference(), work, sample, seed=100 + i, coverage=0.3))
        )
    return plan


def retried_files(client_output: str, names: list[str]) -> set[str]:
    """The files whose upload the client retried or resumed, from what the uploader says."""
    found = set()
    for name in names:
        pattern = re.compile(
            rf"^(upload {re.escape(name)}: .*retrying|{re.escape(name)}: resuming at byte)", re.M
        )
        if pattern.search(client_output):
            found.add(name)
    return found


def upload_all(
    receiver: str,
    tokens: DemoTokens,
    plan: Plan,
    out: list[str],
    retried: dict[tuple[str, str], set[str]] | None = None,
) -> None:
    async def one(region: Region, sample: str, reads: list[Path], gate: asyncio.Semaphore) -> None:
        said = io.StringIO()
        async with gate:
            out.append(
                await report_sample(
                    receiver, tokens.by_holder[region.value], region, sample, f"P-{sample}", reads, said
                )
            )
        if retried is not None:
            retried[(region.value, sample)] = retried_files(said.getvalue(), [p.name for p in reads])

    async def every() -> None:
        gate = asyncio.Semaphore(3)
        await asyncio.gather(*(one(r, s, reads, gate) for r, s, reads in plan))

    asyncio.run(every())


def _process_with_pid(stack: LocalStack, service: str, pid: int) -> Supervised | None:
    return next((p for p in stack.processes_of(service) if p.pid == pid), None)


def receiver_holding_a_put(stack: LocalStack, receiver_db: Engine) -> Supervised | None:
    """The receiver replica holding a file's lease now (``<submission>/<file>``, not a
    seal's ``<submission>/`` :data:`SEAL_LOCK`): one whose PUT is in progress (the fault run
    registers nothing from an inbox, the other use of a file's lease). Holders are
    ``host:pid:request``."""
    now = datetime.now(UTC)
    with receiver_db.connect() as db:
        rows = db.execute(
            select(receiver_leases.c.name, receiver_leases.c.holder, receiver_leases.c.expires_at)
        ).all()
    for row in rows:
        if "/" not in row.name or row.name.endswith(SEAL_LOCK) or row.expires_at <= now:
            continue
        pid = row.holder.split(":")[-2]
        if pid.isdigit() and (process := _process_with_pid(stack, "receiver", int(pid))) is not None:
            return process
    return None


def harmoniser_running_a_job(stack: LocalStack, jobs_db: Engine) -> Supervised | None:
    """The harmoniser replica that owns a running job now (owners are ``host:pid:random``)."""
    with jobs_db.connect() as db:
        owners = db.execute(select(jobs.c.owner).where(jobs.c.state == "running")).scalars().all()
    for owner in owners:
        pid = pid_of(owner or "")
        if pid is not None and (process := _process_with_pid(stack, "harmoniser", pid)):
            return process
    return None


def _supervise_for(stack: LocalStack, seconds: float) -> None:
    assert stack.supervisor is not None
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        stack.supervisor.poll()
        time.sleep(0.05)


def _kill(process: Supervised, why: str, done: Counter[str]) -> None:
    print(f"SIGKILL {process.name} ({why})")
    process.signal(signal.SIGKILL)
    done[process.service] += 1
    done[process.name] += 1


def _aimed(
    stack: LocalStack,
    find: Callable[[], Supervised | None],
    moment: str,
    done: Counter[str],
    possible: Callable[[], bool] = lambda: True,
) -> None:
    """Kill the replica ``find`` names as soon as there is one, waiting up to
    :data:`AIM_TIMEOUT` and while the moment is still ``possible`` (no PUT comes once the
    uploads are done)."""
    assert stack.supervisor is not None
    until = time.monotonic() + AIM_TIMEOUT
    while time.monotonic() < until and possible():
        stack.supervisor.poll()
        try:
            process = find()
        except Exception as exc:  # the database may be locked for a moment: look again
            print(f"looking for a {moment} replica: {type(exc).__name__}: {exc}")
            process = None
        if process is not None:
            _kill(process, moment, done)
            done[moment] += 1
            return
        time.sleep(0.02)
    print(f"no {moment} moment caught (waited up to {AIM_TIMEOUT:.0f} s)")


def run_with_faults(stack: LocalStack, plan: Plan, tokens: DemoTokens, seed: int) -> FaultRun:
    """Upload ``plan`` while killing every process of every service at least once (two of
    the kills aimed mid-upload and mid-harmonisation), a few more at random, and restarting
    the broker once."""
    assert stack.supervisor is not None
    rng = random.Random(seed)
    settings = stack.settings
    receiver_db = make_engine(ReceiverSettings(state=settings.state).database_url)
    jobs_db = make_engine(HarmoniserSettings(state=settings.state).database_url)
    receiver = f"http://127.0.0.1:{stack.port_of('receiver')}"
    run = FaultRun()
    uploader = threading.Thread(target=upload_all, args=(receiver, tokens, plan, run.sent, run.retried))
    uploader.start()
    processes = [p for s in SERVICES for p in stack.processes_of(s)]
    faults: list[tuple[str, Supervised | None]] = [("kill", p) for p in processes]
    faults += [("kill", rng.choice(processes)) for _ in range(2)]
    faults += [(MID_UPLOAD, None), (MID_HARMONISATION, None), ("broker", None)]
    rng.shuffle(faults)
    # The uploads are early and the pipelines later: aim at each while it can happen.
    faults.sort(key=lambda f: {MID_UPLOAD: 0, MID_HARMONISATION: 1}.get(f[0], 2))
    # Gaps of 0.5-2.5 s: a replica comes back within about two seconds, so the kills find
    # replicas at work, catching up after a restart or still starting.
    for kind, process in faults:
        _supervise_for(stack, rng.uniform(0.5, 2.5) if kind != MID_UPLOAD else rng.uniform(0.0, 1.0))
        if kind == "kill" and process is not None:
            _kill(process, "at random", run.faults)
        elif kind == MID_UPLOAD:
            _aimed(
                stack,
                lambda: receiver_holding_a_put(stack, receiver_db),
                MID_UPLOAD,
                run.faults,
                uploader.is_alive,
            )
        elif kind == MID_HARMONISATION:
            _aimed(stack, lambda: harmoniser_running_a_job(stack, jobs_db), MID_HARMONISATION, run.faults)
        else:
            print("stopping the broker")
            stack.broker.stop()
            time.sleep(rng.uniform(1.0, 4.0))
            state, took = stack.broker.start()
            print(f"broker back at {state.bootstrap} in {took:.1f} s")
            run.faults["broker"] += 1
    while uploader.is_alive():
        stack.supervisor.poll()
        uploader.join(0.5)
    receiver_db.dispose()
    jobs_db.dispose()
    return run


def close_month_under_fault(
    stack: LocalStack, month: str, env: Mapping[str, str], rng: random.Random, done: Counter[str]
) -> list[str]:
    """Close ``month`` as two operators would at once (two ``genomhub billing close``), and
    SIGKILL a billing replica while they run; returns their outputs. The replica accrues
    and emits beside the closes, so the close is tested against a replica dying under it."""
    assert stack.supervisor is not None
    exe = str(Path(sys.executable).with_name("genomhub"))
    command = [exe, "billing", "close", month, "--force", "--by", "fault test"]
    closes = [
        subprocess.Popen(command, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    time.sleep(rng.uniform(0.0, 0.3))
    if any(c.poll() is None for c in closes):
        _kill(rng.choice(stack.processes_of("billing")), MID_CLOSE, done)
        done[MID_CLOSE] += 1
    outputs = []
    for close in closes:
        out, _ = close.communicate(timeout=120)
        outputs.append(out)
        if close.returncode != 0:
            raise RuntimeError(f"genomhub billing close {month} failed:\n{out}")
    _supervise_for(stack, 0.5)
    return outputs


def sha256_of_object(url: str, size: int, archive: ArchiveReader) -> str:
    """The sha256 of an archived file's plaintext, read as every reader reads it (decrypted,
    each segment authenticated, held to the size the receiver recorded)."""
    digest = hashlib.sha256()
    with archive.open(url, size) as reader:
        for segment in reader.segments():
            digest.update(segment)
    return digest.hexdigest()


def stack_archive(settings: StackSettings) -> ArchiveSettings:
    """The stack's archive as its processes see it: under its state folder, its key unlocked
    with the passphrase the stack gives them (``StackSettings.archive_key``)."""
    passphrase = settings.archive_key(os.environ).get(
        "GENOMHUB_ARCHIVE_KEY_PASSPHRASE", os.environ.get("GENOMHUB_ARCHIVE_KEY_PASSPHRASE")
    )
    key = ArchiveKeySettings(state=settings.state, key_passphrase=passphrase)
    return ArchiveSettings(state=settings.state, key=key)


def uploads_not_identical(settings: StackSettings, plan: Plan) -> list[str]:
    """Every file of ``plan`` whose stored object is missing, incomplete or differs from the
    file sent (sha256 of the stored bytes against the source's); empty: all identical."""
    sources = {(r.value, s, p.name): p for r, s, reads in plan for p in reads}
    engine = make_engine(ReceiverSettings(state=settings.state).database_url)
    with engine.connect() as db:
        rows = db.execute(
            select(
                received_submissions.c.region,
                received_submissions.c.sample_id,
                received_files.c.name,
                received_files.c.url,
                received_files.c.size,
                received_files.c.completed_at,
            ).join(received_files, received_files.c.submission_id == received_submissions.c.submission_id)
        ).all()
    engine.dispose()
    stored = {(r.region, r.sample_id, r.name): r for r in rows}
    archive = ArchiveReader.of(stack_archive(settings))
    wrong = []
    for key, source in sources.items():
        row = stored.get(key)
        if row is None or row.completed_at is None or row.url is None or row.size is None:
            wrong.append(f"{key}: not complete")
            continue
        sent = hashlib.sha256(source.read_bytes()).hexdigest()
        if sha256_of_object(row.url, row.size, archive) != sent:
            wrong.append(f"{key}: stored bytes differ from {source}")
    return wrong


PIPELINE_COMPLETED = ("job succeeded", "lease lost before the outcome was stored; not reporting it")
"""What a harmoniser replica logs when a job's pipeline ran to its end: its outcome stored,
or found to be another replica's by then (a run that finished but may not report)."""


def pipeline_completions(stack: LocalStack) -> Counter[str]:
    """Per submission: how many times a harmoniser replica's pipeline ran to its end, from
    the replicas' logs (every restart of a replica appends to its log). A job run twice to
    completion counts 2 here whatever the job table's attempts say (an attempt is a claim,
    and a claim cut off by a kill is not a run)."""
    counted: Counter[str] = Counter()
    for process in stack.processes_of("harmoniser"):
        for line in process.log.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("event") in PIPELINE_COMPLETED and "submission_id" in entry:
                counted[str(entry["submission_id"])] += 1
    return counted
