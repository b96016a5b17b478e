"""``genomhub archive recall|cool|status|campaign``: NGC's operators, next to the archive's database
(``GENOMHUB_ARCHIVE_DATABASE_URL``), as ``genomhub audit`` is next to the ledger's. A recall
asked for here is recorded; the archive service's next round gives it a drive."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from datetime import timedelta

import click
from pydantic import TypeAdapter, ValidationError

from services.archive.app import archive_parts
from services.archive.app import now as archive_now
from services.archive.moves import Mover
from services.archive.placement import leases
from services.archive.recalls import FINAL
from services.operations.archive import check, encrypt_plaintext_command, export, rotate_key
from shared.config import ArchiveServiceSettings
from shared.database import LeaseHeld, NamedLeases
from shared.events import SarekVersion
from shared.identifiers import minted_free_of_cpr
from shared.tiers import TIERS, TierName


@click.group("archive")
def archive() -> None:
    """The archive: its tiers (where bodies are, moves, recalls from tape) and its encryption
    (key rotation, migration of plaintext, export, checks)."""


for _encryption_command in (rotate_key, encrypt_plaintext_command, check, export):
    archive.add_command(_encryption_command)


@archive.command("recall")
@click.argument("target")
def recall(target: str) -> None:
    """Recall TARGET from tape: a sample (REGION/PSEUDONYM) or one body (its path)."""
    store, _tiers, recaller, _campaigns = archive_parts(ArchiveServiceSettings())
    try:
        file = store.file(target)
        paths = [file.path] if file is not None else [f.path for f in store.of_sample(target)]
        if not paths:
            raise click.ClickException(f"the archive knows no sample or body {target!r}")
        request_id = minted_free_of_cpr(lambda _: uuid.uuid4().hex)
        recaller.request(request_id, "operator", paths)
    finally:
        store.dispose()
    click.echo(f"recall {request_id}: {len(paths)} file(s) SUBMITTED")


@archive.command("cool")
@click.argument("target")
@click.option("--to", "tier", type=click.Choice(["warm", "cold"]), default="cold", show_default=True)
@click.option("--wait", type=click.FloatRange(min=0), default=120.0, show_default=True, help="Seconds to wait for the rounds' lease.")
def cool(target: str, tier: TierName, wait: float) -> None:
    """Move TARGET (a sample REGION/PSEUDONYM, or one body by its path) down to a tier now,
    as the lifecycle does once it is due: copied, verified there, then removed above. Run
    under the lease of the archive service's rounds, so no round moves a body at the same
    time; the service announces each move (tier-moved) at its next round."""
    settings = ArchiveServiceSettings()
    store, placed, _recaller, _campaigns = archive_parts(settings)
    try:
        file = store.file(target)
        bodies = [file] if file is not None else store.of_sample(target)
        if not bodies:
            raise click.ClickException(f"the archive knows no sample or body {target!r}")
        rounds = NamedLeases(store, leases, timedelta(seconds=max(60.0, settings.lease_seconds)))
        deadline = time.monotonic() + wait
        while True:
            try:
                lease = rounds.acquire("rounds")
                break
            except LeaseHeld:
                if time.monotonic() > deadline:
                    raise click.ClickException(f"the archive's rounds kept their lease for {wait:g} s") from None
                time.sleep(0.5)
        length = timedelta(seconds=max(60.0, settings.lease_seconds))
        done = threading.Event()

        def heartbeat() -> None:
            """Keep the lease through a long copy, as the service's rounds do."""
            while not done.wait(length.total_seconds() / 3) and rounds.renew(lease):
                pass

        beating = threading.Thread(target=heartbeat, daemon=True)
        beating.start()
        try:
            mover = Mover(store, placed, archive_now, lambda _step, _move: lease.check())
            for body in bodies:
                if TIERS.index(body.tier) >= TIERS.index(tier):
                    click.echo(f"{body.path}: on {body.tier} already")
                    continue
                moved = mover.move(body.path, tier)
                click.echo(f"{body.path}: {moved.source} -> {moved.target} {moved.state}")
        finally:
            done.set()
            beating.join()
            rounds.release(lease)
    finally:
        store.dispose()


@archive.command("status")
@click.option("--recall", "recall_id", help="Only this recall, file by file.")
def status(recall_id: str | None) -> None:
    """Bodies per tier, moves under way, and each recall's state (WLCG tape states)."""
    store, _tiers, recaller, _campaigns = archive_parts(ArchiveServiceSettings())
    try:
        if recall_id is None:
            tiers = Counter(f.tier for f in store.every_file())
            click.echo("bodies: " + ", ".join(f"{t} {tiers.get(t, 0)}" for t in ("hot", "warm", "cold")))
            for move in store.open_moves():
                click.echo(f"move {move.id}: {move.path} {move.source}->{move.target} {move.state}")
        requests = [recall_id] if recall_id else store.recall_requests()
        for request in requests:
            state, files = recaller.status(request)
            if not files:
                raise click.ClickException(f"no recall {request}")
            done = sum(f.state in FINAL for f in files)
            click.echo(f"recall {request}: {state} ({done}/{len(files)} files final)")
            if recall_id:
                for f in files:
                    reason = f"  {f.reason}" if f.reason else ""
                    click.echo(f"  {f.state:<9} {f.path}  attempts={f.attempts}{reason}")
    finally:
        store.dispose()


@archive.group("campaign", invoke_without_command=True)
@click.option("--reharmonise", is_flag=True, help="Rerun every harmonised submission (what a campaign does).")
@click.option("--sarek-version", help="The nf-core/sarek release to rerun with (`nextflow run -r`).")
@click.option(
    "--budget-gb",
    type=click.FloatRange(min=0, min_open=True),
    help="Raw reads held recalled at once (GB); default GENOMHUB_ARCHIVE_CAMPAIGN_BUDGET_GB.",
)
@click.pass_context
def campaign(ctx: click.Context, reharmonise: bool, sarek_version: str | None, budget_gb: float | None) -> None:
    """A reanalysis campaign: ``--reharmonise --sarek-version X`` plans one (tape order,
    each tape read once) that the archive service's rounds then recall, within the budget,
    and hand to the harmoniser as the raw reads arrive; ``status``, ``pause`` and ``resume``
    follow and steer it."""
    if ctx.invoked_subcommand is not None:
        return
    if not reharmonise or not sarek_version:
        raise click.UsageError("a campaign is planned with --reharmonise --sarek-version X")
    try:
        release = TypeAdapter(SarekVersion).validate_python(sarek_version)
    except ValidationError:
        raise click.BadParameter(f"{sarek_version!r} is no nf-core/sarek release", param_hint="--sarek-version") from None
    settings = ArchiveServiceSettings()
    store, _tiers, _recaller, campaigns = archive_parts(settings)
    try:
        budget = budget_gb if budget_gb is not None else settings.campaign_budget_gb
        planned = campaigns.plan(
            release,
            int(budget * 1e9),
            settings.tiers.drives,
            settings.mount_seconds,
            settings.drive_rate_mb * 1e6,
        )
        runs = campaigns.runs(planned.id)
    finally:
        store.dispose()
    tapes = len({r.tape for r in runs if r.tape})
    click.echo(
        f"campaign {planned.id}: {len(runs)} submission(s) to rerun with nf-core/sarek {release}, "
        f"{sum(r.size for r in runs) / 1e9:.3f} GB of raw reads ({tapes} on tape), "
        f"at most {budget:g} GB recalled at once"
    )


@campaign.command("status")
@click.argument("campaign_id", required=False)
def campaign_status(campaign_id: str | None) -> None:
    """Each campaign's runs per state, the bytes rerun and its ETA at the pace so far."""
    store, _tiers, _recaller, campaigns = archive_parts(ArchiveServiceSettings())
    try:
        chosen = [campaign_id] if campaign_id else [c.id for c in campaigns.every_campaign()]
        for one in chosen:
            try:
                progress = campaigns.progress(one)
            except KeyError:
                raise click.ClickException(f"no campaign {one}") from None
            c = progress.campaign
            counts = ", ".join(f"{state} {n}" for state, n in progress.runs.items() if n)
            eta = progress.eta.isoformat(timespec="seconds") if progress.eta else "not yet known"
            click.echo(
                f"campaign {c.id}: {c.state}, nf-core/sarek {c.sarek_version}; {counts or 'no runs'}; "
                f"{progress.done_bytes / 1e9:.3f} of {progress.total_bytes / 1e9:.3f} GB done, "
                f"{progress.held_bytes / 1e9:.3f} GB held of {c.budget / 1e9:g}; "
                f"{'ended' if c.state == 'done' else 'ETA'} {eta}"
            )
            if campaign_id:
                for run in campaigns.runs(one):
                    reason = f"  {run.reason}" if run.reason else ""
                    click.echo(f"  {run.position:>5} {run.state:<10} {run.sample} {run.submission_id}{reason}")
    finally:
        store.dispose()


def _steer(campaign_id: str, pause: bool) -> None:
    store, _tiers, _recaller, campaigns = archive_parts(ArchiveServiceSettings())
    try:
        changed = campaigns.pause(campaign_id) if pause else campaigns.resume(campaign_id)
        found = campaigns.campaign(campaign_id)
    finally:
        store.dispose()
    if found is None:
        raise click.ClickException(f"no campaign {campaign_id}")
    if not changed:
        raise click.ClickException(f"campaign {campaign_id} is {found.state}")
    click.echo(f"campaign {campaign_id}: {found.state}")


@campaign.command("pause")
@click.argument("campaign_id")
def campaign_pause(campaign_id: str) -> None:
    """Start no more recalls for the campaign; what is under way goes on to its rerun."""
    _steer(campaign_id, pause=True)


@campaign.command("resume")
@click.argument("campaign_id")
def campaign_resume(campaign_id: str) -> None:
    """Go on with a paused campaign where it stopped."""
    _steer(campaign_id, pause=False)
