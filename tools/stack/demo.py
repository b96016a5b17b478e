"""``genomhub demo``: the whole pipeline on the embedded defaults, on this machine.

It brings a fresh local stack up (its own broker, Jaeger when it can be built, the
services) with one genome equivalent per WGS (the `analysis` rule), writes January 2026 from
the minutes into billing's store while the broker starts (a balance-limited month: 264 kr.
per GE), reports one simulated sample per region through the uploader client, waits until
each is indexed and accrued, closes the month, prints the refund statement, writes both
months' statement pages and prints each submission's trace, tells the data-out story (a
Syddanmark clinician's working copy of a Hovedstaden patient's genome, ``demo_access``), and
shuts the stack down. Every run starts from an empty state folder,
so it shows the same thing each time. The end-to-end and fault tests drive the stack with
these same functions.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import click

from services.billing.accrual import Accrual
from services.billing.money import format_danish, format_ge_exact
from services.billing.refund import Statement, allocate
from services.billing.report import render as render_statement
from services.billing.store import BillingStore, open_store
from services.receiver.client import LocalFile, Plan, Uploader
from shared.auth import NATIONAL, new_token, token_hash
from shared.bus import group_lag, read_records
from shared.config import BillingSettings, StateSettings
from shared.envelope import normalise_headers
from shared.events import COPENHAGEN, MICRO_GE, AnalysisType, FileRole, Indexed, Region, micro_to_ge, month_of
from shared.identifiers import minted_free_of_cpr
from shared.kafka import KafkaAccess
from shared.synthetic import DEPARTMENTS, simulate_paired_reads
from shared.topics import SERVICES, consumer_group, topic_name
from tools.background import free_port
from tools.jaeger.server import JaegerError, LocalJaeger, fetch_trace, longest_chain, spans_by_service
from tools.stack.demo_access import CASE, ROLES, show_data_out
from tools.stack.demo_archive import show_archive_at_rest
from tools.stack.demo_spoke import show_portal, show_spoke
from tools.stack.environment import StackSettings
from tools.stack.supervisor import LocalStack, render

MINUTES_MONTH = "2026-01"
MINUTES_GE = 2016
"""January 2026 as the 2026 minutes give it: 2,016 genome equivalents reported in total."""
MINUTES_BALANCE_ORE = 532_281_00
"""What the grant had left after December 2025 (the minutes): January is balance-limited."""
MINUTES_OPENED = datetime(2026, 1, 1, 8, tzinfo=COPENHAGEN)
MINUTES_SETTLED = datetime(2026, 2, 17, 10, tzinfo=COPENHAGEN)  # the working group's meeting day
REGION_SHARES = {
    Region.HOVEDSTADEN: 33,
    Region.SJAELLAND: 15,
    Region.NORDJYLLAND: 10,
    Region.MIDTJYLLAND: 22,
    Region.SYDDANMARK: 20,
}
"""How the demo spreads January's 2,016 genomes over the regions (the minutes give the total
only); within a region they go round its departments."""
TOP_UP_DKK = "10000"
"""The demo's top-up after January, so the demo's own month is paid at the standard rate."""
MINUTES_IDS = uuid.UUID("5d1c2f0e-7a43-4e0b-9a57-3c2b8f1e6d24")
"""Namespace of the minutes month's sample submissions and events: the same every run."""
DEMO_SAMPLE = "DEMO-{region}-S1"
"""Each region's one sample of the demo's month."""
DEMO_GE_SETTINGS = {"GENOMHUB_GE_RULE": "analysis"}
"""One genome equivalent per WGS sample: the demo's samples are tiny (a few hundred kilobases
of the synthetic genome), so under the `bases` rule each would be 0.000043 GE and the
statement øre. Finance counts a WGS as one genome."""

DEMO_TAPE_SETTINGS = {"GENOMHUB_ARCHIVE_ROUND_INTERVAL": "2", "GENOMHUB_TIER_RECALL_DELAY": "10"}
"""The archive's rounds every 2 s and a 10 s tape recall (the embedded cold tier's drives), so
the demo's recall is seen through its states in seconds rather than minutes."""


@dataclass(frozen=True)
class DemoTokens:
    """A fresh token for each region and for the national operator, and one for each person
    of the data-out story (:data:`tools.stack.demo_access.ROLES`), for one stack's life."""

    by_holder: dict[str, str]
    by_role: dict[str, str] = field(default_factory=dict)

    @classmethod
    def make(cls) -> DemoTokens:
        return cls(
            {holder: new_token() for holder in [*(r.value for r in Region), NATIONAL]},
            {person: new_token() for person in ROLES},
        )

    def env(self) -> dict[str, str]:
        entries: dict[str, object] = {token_hash(t): h for h, t in self.by_holder.items()}
        for person, token in self.by_role.items():
            holder, role = ROLES[person]
            entries[token_hash(token)] = {"holder": holder, "roles": [role]}
        return {"GENOMHUB_TOKENS": json.dumps(entries)}


def stack_env(tokens: DemoTokens) -> dict[str, str]:
    """Tokens and free HTTP ports, so the demo never collides with a stack already running."""
    env = tokens.env()
    for service in SERVICES:
        env[f"GENOMHUB_{service.upper()}_PORT"] = str(free_port())
    return env


def simulate_sample(
    fasta: Path, out_dir: Path, sample_id: str, seed: int, coverage: float = 4.0
) -> list[Path]:
    """A small paired-end WGS sample of the synthetic genome, with a few planted SNPs."""
    pairs = simulate_paired_reads(fasta, out_dir, prefix=sample_id, coverage=coverage, snps=20, seed=seed)
    return [pairs.fastq_1, pairs.fastq_2]


async def report_sample(
    receiver_url: str,
    token: str,
    region: Region,
    sample_id: str,
    patient_id: str,
    reads: Iterable[Path],
    said: IO[str] | None = None,
) -> str:
    """Upload and seal one sample as its region would; returns the submission id. What the
    uploader says (its retries, its resumes) goes to ``said``, or to stderr."""
    files = [LocalFile(p, FileRole.RAW_READS) for p in reads]
    plan = Plan(region.value, DEPARTMENTS[region][0], sample_id, patient_id, "WGS", "ILLUMINA", files)
    uploader = Uploader(receiver_url, token, retries=8, stream=said if said is not None else sys.stderr)
    sealed = await uploader.upload(plan, None, checksum=True)
    return str(sealed["submission_id"])


@dataclass(frozen=True)
class Outcome:
    """What the indexed topic says of one submission."""

    event_ids: frozenset[str]
    trace_id: str | None
    accepted: bool
    status: str


async def indexed_outcomes(access: KafkaAccess) -> dict[str, Outcome]:
    """Per submission id: the distinct indexed event ids, its trace and its verdict."""
    found: dict[str, tuple[set[str], str | None, bool, str]] = {}
    for record in await read_records(access, [topic_name(Indexed)]):
        headers = dict(normalise_headers(record.headers))
        data = Indexed.model_validate_json(record.value)
        traceparent = headers.get("traceparent", b"").decode()
        trace_id = traceparent.split("-")[1] if traceparent.count("-") == 3 else None
        ids, _, _, _ = found.setdefault(
            data.submission.submission_id, (set(), trace_id, data.accepted, data.status)
        )
        ids.add(headers.get("ce_id", b"").decode())
    return {k: Outcome(frozenset(v[0]), v[1], v[2], str(v[3])) for k, v in found.items()}


async def billing_caught_up(access: KafkaAccess) -> bool:
    """Billing has consumed every indexed event there is."""
    lag = await group_lag(access, consumer_group("billing"))
    indexed = [(c, e) for tp, (c, e) in lag.items() if tp.topic == topic_name(Indexed)]
    return bool(indexed) and all(c >= e for c, e in indexed)


def wait_until_accrued(
    stack: LocalStack, submissions: Iterable[str], timeout: float, say: Callable[[str], None] = print
) -> dict[str, Outcome]:
    """Keep the stack supervised until every submission is indexed and billing caught up."""
    assert stack.supervisor is not None
    wanted = set(submissions)
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    while time.monotonic() < deadline:
        stack.supervisor.poll()
        try:
            outcomes = asyncio.run(indexed_outcomes(stack.operator))
            done = wanted & set(outcomes)
            for sid in sorted(done - seen):
                say(f"indexed {sid}: {outcomes[sid].status}")
            seen |= done
            if done == wanted and asyncio.run(billing_caught_up(stack.operator)):
                return {sid: outcomes[sid] for sid in wanted}
        except Exception as exc:  # the broker may be restarting; look again shortly
            say(f"waiting: {type(exc).__name__}: {exc}")
        time.sleep(1.0)
    raise TimeoutError(f"not all indexed and accrued after {timeout:.0f} s: {sorted(wanted - seen)}")


def genomhub_command(args: list[str], env: Mapping[str, str]) -> str:
    """Run a ``genomhub`` command against the stack, as an operator would; returns stdout."""
    exe = str(Path(sys.executable).with_name("genomhub"))
    result = subprocess.run([exe, *args], env={**os.environ, **env}, capture_output=True, text=True)
    if result.returncode != 0:
        raise click.ClickException(f"genomhub {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def trace_chain(stack: LocalStack, trace_id: str, timeout: float = 30.0) -> list[str]:
    """The services along a trace's longest causal chain, once the five of intake have reported
    (the access service and the publisher consume indexed too, but beside billing, not after
    it, and the archive file-received, beside the validator)."""
    assert stack.jaeger_state is not None
    deadline = time.monotonic() + timeout
    chain: list[str] = []
    while time.monotonic() < deadline:
        trace = fetch_trace(stack.jaeger_state, trace_id)
        chain = longest_chain(spans_by_service(trace)) if trace else []
        if set(SERVICES) - {"access", "archive", "publisher"} <= set(chain):
            break
        time.sleep(1.0)
    return chain


def ensure_jaeger(settings: StackSettings, say: Callable[[str], None]) -> None:
    jaeger = LocalJaeger(settings.state_dir, settings.cache)
    if not jaeger.built():
        say("building Jaeger from the Go module proxy (once; several minutes on a cold Go cache) ...")
        try:
            jaeger.build()
        except JaegerError as exc:
            say(f"Jaeger could not be built, the demo runs without traces: {exc}")


def minutes_submission_id(sample: str) -> str:
    """A submission id of the receiver's shape (32 hex digits), the same every run."""

    def draw(attempt: int) -> str:
        return uuid.uuid5(MINUTES_IDS, f"{sample}|{attempt}").hex

    return minted_free_of_cpr(draw)


def minutes_accruals() -> Iterator[Accrual]:
    """January 2026's 2,016 WGS samples, one genome equivalent each, received over the month."""
    counts = allocate(MINUTES_GE, list(REGION_SHARES.values()))
    n = 0
    for region, count in zip(REGION_SHARES, counts, strict=True):
        departments = DEPARTMENTS[region]
        for i in range(count):
            received = MINUTES_OPENED + timedelta(minutes=21 * n)  # 2,016 x 21 min: within January
            sample = f"JAN26-{region.value[:3].upper()}-{i + 1:04d}"
            yield Accrual(
                sample_id=sample,
                submission_id=minutes_submission_id(sample),
                region=region,
                department=departments[i % len(departments)],
                analysis_type=AnalysisType.WGS,
                received_at=received,
                received_month=month_of(received),
                ge_micro=MICRO_GE,
                event_id=str(uuid.uuid5(MINUTES_IDS, f"event|{sample}")),
            )
            n += 1


def record_minutes_month(store: BillingStore, standard_rate_dkk: int) -> Statement:
    """January 2026 as the minutes record it, written to billing's own store through its own
    accrual and close: the grant's 532.281 kr., 2,016 GE, closed at 264 kr. per GE.

    The demo's stack cannot report 2,016 genomes in a minute, so this month is history
    loaded into the store, not traffic; the running billing service then emits its
    refund-calculated event like any other statement's."""
    store.add_to_grant(
        MINUTES_BALANCE_ORE, by="genomhub demo", at=MINUTES_OPENED, note="saldo efter referatet fra 2026"
    )
    for accrual in minutes_accruals():
        store.accrue(accrual)
    closed = store.close(
        MINUTES_MONTH, standard_rate_dkk=standard_rate_dkk, now=MINUTES_SETTLED, by="genomhub demo"
    )
    return closed.statement


def run_demo(settings: StackSettings, say: Callable[[str], None]) -> None:
    ensure_jaeger(settings, say)
    tokens = DemoTokens.make()
    env = {**stack_env(tokens), **DEMO_GE_SETTINGS, **DEMO_TAPE_SETTINGS}
    national = {"GENOMHUB_HOME": str(settings.state_dir), **env}
    national |= settings.archive_key({**os.environ, **national})  # the commands read the archive too
    # January 2026 goes into billing's store while the broker starts (the store is migrated
    # first, here, so the billing service finds it ready whenever it opens it).
    billing = BillingSettings(state=settings.state)
    store = open_store(billing.database_url, billing.opening_balance_dkk)
    with ThreadPoolExecutor(1) as pool:
        january = pool.submit(record_minutes_month, store, billing.standard_rate_dkk)
        with LocalStack(settings, env=env, say=say, spokes=[Region.SYDDANMARK]) as stack:
            stack.wait_ready()
            statement = january.result()
            say(
                f"{MINUTES_MONTH} from the minutes: {statement.samples} WGS samples, "
                f"{format_ge_exact(micro_to_ge(statement.total_ge_micro))} GE against "
                f"{format_danish(statement.balance_before_ore)}: {statement.rate_dkk} DKK per GE "
                f"(standard {statement.standard_rate_dkk}), {format_danish(statement.total_ore)} paid, "
                f"{format_danish(statement.balance_after_ore)} left"
            )
            patients = run_demo_month(settings, store, stack, tokens, env, national, say)
            show_data_out(
                settings.state_dir / "data-out",
                settings.reference(),
                tokens.by_role,
                national,
                patients[Region.HOVEDSTADEN],
                f"{Region.HOVEDSTADEN.value}/{DEMO_SAMPLE.format(region=Region.HOVEDSTADEN.value.upper())}",
                genomhub_command,
                say,
            )
            (spoke,) = stack.spokes
            show_spoke(stack, spoke, tokens.by_holder[spoke.region.value], tokens.by_holder[NATIONAL], say)
            show_portal(
                spoke, tokens.by_role["syddanmark-clinician"], patients[Region.HOVEDSTADEN], CASE, say
            )
            say("\nstopping the stack")
    show_archive_at_rest(settings.state_dir, national, genomhub_command, say)


def write_statement_pages(store: BillingStore, months: Iterable[str], folder: Path) -> list[Path]:
    """Each month's statement page as the national operator reads it, in ``folder``."""
    pages = []
    for month in months:
        page = folder / f"statement-{month}.html"
        page.write_text(render_statement(store, month, "html", None), encoding="utf-8")
        pages.append(page)
    return pages


def run_demo_month(
    settings: StackSettings,
    store: BillingStore,
    stack: LocalStack,
    tokens: DemoTokens,
    env: Mapping[str, str],
    national: dict[str, str],
    say: Callable[[str], None],
) -> dict[Region, str]:
    """The demo's own month: one sample per region through all five stages, then closed;
    returns each region's patient pseudonym."""
    national["GENOMHUB_KAFKA_BOOTSTRAP"] = stack.bootstrap
    say(
        genomhub_command(
            ["billing", "grant", "add", TOP_UP_DKK, "--note", "demo: tilskud efter januar"],
            national,
        ).strip()
    )
    receiver = f"http://127.0.0.1:{env['GENOMHUB_RECEIVER_PORT']}"
    fasta = settings.reference()
    submissions: dict[str, Region] = {}
    patients: dict[Region, str] = {}
    for seed, region in enumerate(Region, start=1):
        sample = DEMO_SAMPLE.format(region=region.value.upper())
        reads = simulate_sample(fasta, settings.state_dir / "samples", sample, seed)
        patients[region] = f"DEMO-P{seed}"
        sid = asyncio.run(
            report_sample(receiver, tokens.by_holder[region.value], region, sample, patients[region], reads)
        )
        submissions[sid] = region
        say(f"{region.value}: reported {sample} as submission {sid}")
    outcomes = wait_until_accrued(stack, submissions, timeout=900, say=say)
    say("\n" + render(stack.status()) + "\n")
    month = month_of(datetime.now(UTC))
    say(genomhub_command(["billing", "close", month, "--force", "--by", "genomhub demo"], national).strip())
    say(f"\nrefund statement {month} (CSV, amounts in DKK):")
    say(genomhub_command(["refunds", "--month", month, "--format", "csv"], national).rstrip())
    pages = write_statement_pages(store, [MINUTES_MONTH, month], settings.state_dir)
    say("\nstatement pages (Danish, for screen and A4): " + "  ".join(p.as_uri() for p in pages))
    say("\ntraces (Jaeger query API):")
    for sid, region in submissions.items():
        trace_id = outcomes[sid].trace_id
        if stack.jaeger_state is None or trace_id is None:
            say(f"  {region.value:<12} {sid}: trace {trace_id} (Jaeger not running)")
            continue
        say(f"  {region.value:<12} {stack.jaeger_state.trace_url(trace_id)}")
        say(f"  {'':<12} {' -> '.join(trace_chain(stack, trace_id))}")
    return patients


@click.command("demo")
def demo() -> None:
    """Run the pipeline end to end on a fresh local stack and print what it produced."""
    base = StateSettings()
    home = base.state_dir / "demo" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    settings = StackSettings.fresh(home, base.cache)
    click.echo(f"demo state in {home}")
    run_demo(settings, click.echo)
