"""``genomhub catalogue ...``: the catalogue from the command line, for NGC's operators.

The commands read the catalogue database directly (``GENOMHUB_INDEXER_DATABASE_URL``), as the
national operator: they run inside NGC next to the database, so they need no token and see
every region. Filters are validated by the same model as the HTTP API's.
"""

from __future__ import annotations

import json
import sys

import click

from services.indexer.filters import MAX_LIMIT, InvalidQuery, SampleFilters, parse_query
from services.indexer.store import Catalogue
from shared.config import IndexerSettings
from shared.events import AnalysisType, Region, SampleStatus


def _catalogue() -> Catalogue:
    return Catalogue(IndexerSettings().database_url)


@click.group("catalogue")
def catalogue() -> None:
    """The national catalogue kept by the indexer (metadata only)."""


@catalogue.command("search")
@click.option("--region", type=click.Choice([r.value for r in Region]))
@click.option("--analysis", type=click.Choice([a.value for a in AnalysisType]))
@click.option("--status", type=click.Choice([s.value for s in SampleStatus]))
@click.option("--received-from", help="First day of receipt, YYYY-MM-DD (Europe/Copenhagen).")
@click.option("--received-to", help="Last day of receipt, YYYY-MM-DD (Europe/Copenhagen).")
@click.option("--q", "q", help="Substring of sample id, patient pseudonym, submission id, department.")
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=50, show_default=True)
@click.option("--cursor", help="Continue after a previous page (its next_cursor).")
@click.option("--json", "as_json", is_flag=True, help="Print the page as JSON, as the API returns it.")
def search(as_json: bool, **options: str | int | None) -> None:
    """List samples, newest received first."""
    params = {k: str(v) for k, v in options.items() if v is not None}
    try:
        filters = parse_query(SampleFilters, params, set())
    except InvalidQuery as exc:
        raise click.UsageError(str(exc)) from exc
    store = _catalogue()
    try:
        page = store.search(filters)
    finally:
        store.close()
    if as_json:
        click.echo(page.model_dump_json(indent=2))
        return
    header = ("sample", "region", "analysis", "status", "received", "GE", "files", "submission")
    rows = [
        (
            s.sample_id,
            s.region.value,
            s.analysis_type.value,
            s.status.value,
            s.received_at.isoformat(timespec="seconds"),
            format(s.genome_equivalents, "f"),
            str(s.files),
            s.submission_id,
        )
        for s in page.items
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    if page.next_cursor:
        click.echo(f"more: --cursor {page.next_cursor}", err=True)


@catalogue.command("show")
@click.argument("region", type=click.Choice([r.value for r in Region]))
@click.argument("sample_id")
def show(region: str, sample_id: str) -> None:
    """One sample, with its files and submissions, as JSON: REGION's sample SAMPLE_ID.

    A pseudonym is its region's: two regions may each hold a sample of the same pseudonym,
    so a sample is named by both.
    """
    store = _catalogue()
    try:
        found = store.sample(Region(region), sample_id)
    finally:
        store.close()
    if found is None:
        raise click.ClickException(f"no sample {sample_id!r} in {region}")
    click.echo(found.model_dump_json(indent=2))


@catalogue.command("dump")
def dump() -> None:
    """Every catalogue row as sorted JSON: two catalogues built from the same events compare equal."""
    store = _catalogue()
    try:
        json.dump(store.dump(), sys.stdout, indent=1, sort_keys=True, default=str)
    finally:
        store.close()
    sys.stdout.write("\n")
