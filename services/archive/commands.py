"""``genomhub archive recall|status``: NGC's operators, next to the archive's database
(``GENOMHUB_ARCHIVE_DATABASE_URL``), as ``genomhub audit`` is next to the ledger's. A recall
asked for here is recorded; the archive service's next round gives it a drive."""

from __future__ import annotations

import uuid
from collections import Counter

import click

from services.archive.app import archive_parts
from services.archive.recalls import FINAL
from services.operations.archive import check, encrypt_plaintext_command, export, rotate_key
from shared.config import ArchiveServiceSettings
from shared.identifiers import minted_free_of_cpr


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
    store, _tiers, recaller = archive_parts(ArchiveServiceSettings())
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


@archive.command("status")
@click.option("--recall", "recall_id", help="Only this recall, file by file.")
def status(recall_id: str | None) -> None:
    """Bodies per tier, moves under way, and each recall's state (WLCG tape states)."""
    store, _tiers, recaller = archive_parts(ArchiveServiceSettings())
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
