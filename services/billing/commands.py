"""``genomhub billing grant|close|forecast`` and ``genomhub refunds``: finance's commands.

They work on billing's database directly (the settings say where), so a month can be closed
and a statement read while the service runs or not; the close sends its refund-calculated
event itself, through the shared publisher, and records that the broker acknowledged it.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

import click

from services.billing.money import MoneyError, format_danish, format_ge_exact, ore_to_dkk, parse_dkk
from services.billing.months import parse_month
from services.billing.refund import SERVICE, Statement, forecast
from services.billing.report import FORMATS, NoStatement, render
from services.billing.store import BillingStore, CloseRefused, open_store
from shared.config import BillingSettings
from shared.events import Region, ge_to_micro, micro_to_ge
from shared.topics import FINANCE

SOURCE = f"/genomhub/{SERVICE}"


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


by_option = click.option(
    "--by", default=_user, show_default="the OS user", help="Who makes this change (kept in the ledger)."
)


def _store() -> BillingStore:
    settings = BillingSettings()
    return open_store(settings.database_url, settings.opening_balance_dkk)


def _month(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        return parse_month(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


@click.group("billing")
def billing() -> None:
    """NNF refunds per genome equivalent: the grant ledger, month closes, forecasts."""


@billing.group("grant")
def grant() -> None:
    """The Novo Nordisk Foundation grant ledger (append-only)."""


@grant.command("add")
@click.argument("amount")
@click.option("--note", default="", help="Why: e.g. the grant letter's reference.")
@by_option
def grant_add(amount: str, note: str, by: str) -> None:
    """Add AMOUNT DKK to the grant (the opening balance when the ledger is empty).

    AMOUNT is plain: 532281, 532281.50 or '532281 DKK'. Other currencies are refused.
    """
    try:
        ore = parse_dkk(amount)
    except MoneyError as exc:
        raise click.ClickException(str(exc)) from exc
    if ore == 0:
        raise click.ClickException("an addition to the grant must be more than 0 DKK")
    entry = _store().add_to_grant(ore, by=by, at=datetime.now(UTC), note=note)
    click.echo(
        f"{entry.kind} #{entry.entry_id}: +{format_danish(entry.amount_ore)} by {entry.recorded_by}; "
        f"balance {format_danish(entry.balance_after_ore)}"
    )


@grant.command("show")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable; amounts in øre.")
def grant_show(as_json: bool) -> None:
    """Every ledger entry, oldest first, and the balance."""
    entries = _store().ledger()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "currency": "DKK",
                    "balance_ore": entries[-1].balance_after_ore if entries else None,
                    "entries": [
                        {
                            "entry_id": e.entry_id,
                            "kind": e.kind,
                            "amount_ore": e.amount_ore,
                            "balance_after_ore": e.balance_after_ore,
                            "month": e.month,
                            "statement_id": e.statement_id,
                            "recorded_by": e.recorded_by,
                            "recorded_at": e.recorded_at.isoformat(),
                            "note": e.note,
                        }
                        for e in entries
                    ],
                },
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    if not entries:
        click.echo("the grant ledger is empty: record the opening balance with `genomhub billing grant add`")
        return
    for e in entries:
        click.echo(
            f"#{e.entry_id:<4} {e.recorded_at:%Y-%m-%d %H:%M} {e.kind:<13} {e.month or '':<8}"
            f"{format_danish(e.amount_ore):>20} {format_danish(e.balance_after_ore):>20}  "
            f"{e.recorded_by}{'  ' + e.note if e.note else ''}"
        )
    click.echo(f"balance: {format_danish(entries[-1].balance_after_ore)}")


def _summary(statement: Statement) -> str:
    return (
        f"{statement.month}: {format_ge_exact(micro_to_ge(statement.total_ge_micro))} GE at "
        f"{statement.rate_dkk} DKK = {format_danish(statement.total_ore)}; balance "
        f"{format_danish(statement.balance_before_ore)} -> {format_danish(statement.balance_after_ore)}; "
        f"statement {statement.statement_id}, event {statement.event_id}"
    )


@billing.command("close")
@click.argument("month", callback=_month)
@click.option("--force", is_flag=True, help="Close a month that has not ended (recorded in the ledger).")
@by_option
def close(month: str, force: bool, by: str) -> None:
    """Close MONTH (YYYY-MM) into its statement and emit one refund-calculated event.

    Closing a closed month again prints the same statement and sends nothing new, unless
    its event was never acknowledged by the broker; then it is sent again with the same id.
    """
    from services.billing.app import close_trace
    from shared import telemetry
    from shared.bus import publish

    settings = BillingSettings()
    store = _store()
    try:
        result = store.close(
            month,
            standard_rate_dkk=settings.standard_rate_dkk,
            now=datetime.now(UTC),
            by=by,
            force=force,
        )
    except CloseRefused as exc:
        raise click.ClickException(f"refused: {exc}") from exc
    statement = result.statement
    click.echo(("closed " if result.created else "already closed ") + _summary(statement))
    if not result.emitted:
        telemetry.setup(SERVICE, settings.telemetry.log_level)
        try:
            with close_trace(telemetry.tracer(f"genomhub.{SERVICE}"), store, statement):
                asyncio.run(
                    publish(
                        [(statement.event(), statement.event_id)],
                        SOURCE,
                        settings.kafka,
                        settings.state,
                        principal=FINANCE,
                    )
                )
        except Exception as exc:  # the statement stands; only its event is still to be sent
            raise click.ClickException(
                f"the statement of {month} is closed and stored, but its refund-calculated event was not "
                f"acknowledged ({type(exc).__name__}: {exc}). The running billing service sends it within "
                f"minutes, or run this command again: it sends the same event, with the same id"
            ) from exc
        finally:
            telemetry.flush()
        store.mark_emitted(statement, datetime.now(UTC))
        click.echo(f"refund-calculated {statement.event_id} emitted")


@billing.command("forecast")
@click.option("--ge", "ge", required=True, help="Genome equivalents of the month, e.g. 2016 or 2016.5.")
@click.option("--balance", default=None, help="Grant balance in DKK. Default: the ledger's balance now.")
@click.option("--standard-rate", type=click.IntRange(min=0), default=None, help="Whole DKK per GE.")
@click.option("--json", "as_json", is_flag=True, help="Print {rate_dkk, total_dkk, balance_after_dkk}.")
def forecast_command(ge: str, balance: str | None, standard_rate: int | None, as_json: bool) -> None:
    """What a month of GE genome equivalents would be refunded, under the close's rule."""
    try:
        ge_micro = ge_to_micro(Decimal(ge))
        if ge_micro < 0:
            raise ValueError("genome equivalents cannot be negative")
    except (InvalidOperation, ValueError) as exc:
        raise click.BadParameter(f"{ge!r}: {exc}", param_hint="--ge") from exc
    if balance is not None:
        try:
            balance_ore = parse_dkk(balance)
        except MoneyError as exc:
            raise click.BadParameter(str(exc), param_hint="--balance") from exc
    else:
        current = _store().balance()
        if current is None:
            raise click.ClickException(
                "the grant ledger is empty: give --balance or record the opening balance"
            )
        balance_ore = current
    rate = BillingSettings().standard_rate_dkk if standard_rate is None else standard_rate
    result = forecast(ge_micro, balance_ore, rate)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "rate_dkk": result.rate_dkk,
                    "total_dkk": str(ore_to_dkk(result.total_ore)),
                    "balance_after_dkk": str(ore_to_dkk(result.balance_after_ore)),
                }
            )
        )
        return
    click.echo(f"rate:          {result.rate_dkk} DKK per genome equivalent (standard {rate})")
    click.echo(f"total paid:    {format_danish(result.total_ore)}")
    click.echo(f"balance after: {format_danish(result.balance_after_ore)}")


@click.command("refunds")
@click.option("--month", required=True, callback=_month, help="The closed month, YYYY-MM.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="csv", show_default=True)
@click.option(
    "--region", type=click.Choice([r.value for r in Region]), default=None, help="One region's view."
)
@click.option(
    "--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="File to write."
)
def refunds(month: str, fmt: str, region: str | None, output: Path | None) -> None:
    """A closed month's refund statement for finance, as CSV, JSON or HTML."""
    try:
        body = render(_store(), month, fmt, Region(region) if region else None)
    except NoStatement as exc:
        raise click.ClickException(str(exc)) from exc
    if output is None:
        sys.stdout.write(body)
    else:
        output.write_text(body, encoding="utf-8")
        click.echo(f"wrote {output}")
