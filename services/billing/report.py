"""Finance's view of a statement: CSV and JSON (plain numbers, the events' own values) and
HTML (a Danish page for screen and A4 paper, with server-drawn SVG charts, readable with
JavaScript off and in a mail client).

A region sees its own lines only: the rate, its region's refund and its departments. The
national totals and the grant balance are left out of its view, because together with its
own figures they would reveal the other regions' production. The national operator sees all.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from html import escape
from typing import Any, Literal, get_args

from services.billing.charts import MonthGe, balance_chart, ge_chart
from services.billing.danish import ledger_kind_name, ledger_note
from services.billing.money import (
    ORE_PER_KRONE,
    format_danish,
    format_ge_danish,
    format_ge_exact,
    format_integer_danish,
    ge_places,
    ore_to_dkk,
)
from services.billing.refund import Statement
from services.billing.store import BillingStore, LedgerEntry
from shared.danish import analysis_name, local_date, local_moment, month_name, region_name
from shared.events import Region, micro_to_ge
from shared.spreadsheet import SafeDictWriter

Format = Literal["csv", "json", "html"]
FORMATS: tuple[Format, ...] = get_args(Format)
MEDIA_TYPES = {"csv": "text/csv", "json": "application/json", "html": "text/html"}
CSV_COLUMNS = (
    "level",
    "month",
    "statement_id",
    "region",
    "department",
    "analysis_type",
    "received_month",
    "adjustment",
    "samples",
    "genome_equivalents",
    "rate_dkk",
    "amount_ore",
    "amount_dkk",
    "balance_before_dkk",
    "balance_after_dkk",
)


def view(statement: Statement, region: Region | None) -> dict[str, Any]:
    """The statement document as ``region`` may read it (None: the national operator)."""
    doc = statement.document()
    if region is None:
        return doc
    keep = region.value
    return {
        "month": doc["month"],
        "statement_id": doc["statement_id"],
        "currency": doc["currency"],
        "rate_dkk": doc["rate_dkk"],
        "closed_at": doc["closed_at"],
        "region": keep,
        "regions": [r for r in doc["regions"] if r["region"] == keep],
        "lines": [ln for ln in doc["lines"] if ln["region"] == keep],
    }


def render_json(statement: Statement, region: Region | None) -> str:
    return json.dumps(view(statement, region), indent=2, ensure_ascii=False) + "\n"


def render_csv(statement: Statement, region: Region | None) -> str:
    """One row per line, per region and (national view) the total; amounts plain; text
    cells that a spreadsheet would run as a formula quoted (``shared.spreadsheet``)."""
    doc = view(statement, region)
    out = io.StringIO()
    writer = SafeDictWriter(out, CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    base = {"month": doc["month"], "statement_id": doc["statement_id"], "rate_dkk": doc["rate_dkk"]}
    for ln in doc["lines"]:
        writer.writerow(
            {
                **base,
                "level": "line",
                **{k: ln[k] for k in ("region", "department", "analysis_type", "received_month", "samples")},
                "adjustment": "yes" if ln["adjustment"] else "no",
                "genome_equivalents": ln["genome_equivalents"],
                "amount_ore": ln["amount_ore"],
                "amount_dkk": ore_to_dkk(ln["amount_ore"]),
            }
        )
    for r in doc["regions"]:
        writer.writerow(
            {
                **base,
                "level": "region",
                "region": r["region"],
                "samples": r["samples"],
                "genome_equivalents": r["genome_equivalents"],
                "amount_ore": r["amount_ore"],
                "amount_dkk": ore_to_dkk(r["amount_ore"]),
            }
        )
    if region is None:
        writer.writerow(
            {
                **base,
                "level": "total",
                "samples": doc["samples"],
                "genome_equivalents": doc["total_genome_equivalents"],
                "amount_ore": doc["total_ore"],
                "amount_dkk": ore_to_dkk(doc["total_ore"]),
                "balance_before_dkk": ore_to_dkk(doc["balance_before_ore"]),
                "balance_after_dkk": ore_to_dkk(doc["balance_after_ore"]),
            }
        )
    return out.getvalue()


# -- the page ----------------------------------------------------------------------------
_STYLE = (
    "body{font-family:sans-serif;margin:2em auto;max-width:62em;padding:0 1em;color:#222;line-height:1.35}"
    "h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.6em}"
    ".sub,.note{color:#555}.note{font-size:.9em}"
    "table{border-collapse:collapse;margin:1em 0;width:100%}"
    "th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}"
    "th{background:#f0f0f0}.n{text-align:right}td.n{font-variant-numeric:tabular-nums;white-space:nowrap}"
    "tfoot td{font-weight:bold}tr.group th{background:#e4ebf3;text-align:left}caption{text-align:left;font-weight:bold;padding:4px 0}"
    "table.facts{width:auto}table.facts th{font-weight:normal}"
    "figure{margin:1em 0}svg{display:block;max-width:100%;height:auto}"
    "@media print{@page{size:A4;margin:15mm 12mm}"
    "body{margin:0;max-width:none;padding:0;font-size:9.5pt}"
    "th{-webkit-print-color-adjust:exact;print-color-adjust:exact}"
    "h2{break-after:avoid}tr,figure{break-inside:avoid}thead{display:table-header-group}}"
)
GE_HEADER = "Genom&shy;ækvivalenter"
"""A soft hyphen lets the one long word of a column head break on a narrow A4 column."""


def _cell(text: str, numeric: bool) -> str:
    return f"<td{' class=n' if numeric else ''}>{escape(text)}</td>"


def _row(cells: Sequence[tuple[str, bool]]) -> str:
    return "<tr>" + "".join(_cell(c, num) for c, num in cells) + "</tr>"


def _fact(label: str, value: str, numeric: bool = False) -> str:
    return f"<tr><th scope=row>{escape(label)}</th>{_cell(value, numeric)}</tr>"


def _head(columns: Sequence[tuple[str, bool]]) -> str:
    """Column heads; the names are the page's own markup (``GE_HEADER``), never data."""
    return (
        "<thead><tr>"
        + "".join(f"<th{' class=n' if n else ''}>{c}</th>" for c, n in columns)
        + "</tr></thead>"
    )


def _facts(doc: dict[str, Any], region: Region | None, ge: Callable[[str], str]) -> list[str]:
    rate = format_danish(doc["rate_dkk"] * ORE_PER_KRONE)
    parts = ["<table class=facts><caption>Opgørelse</caption>"]
    parts.append(_fact("Opgørelsesmåned", month_name(doc["month"])))
    if region is not None:
        parts.append(_fact("Region", region_name(region)))
    parts.append(_fact("Sats pr. genomækvivalent", rate, True))
    if region is None:
        parts += [
            _fact("Standardsats", format_danish(doc["standard_rate_dkk"] * ORE_PER_KRONE), True),
            _fact("Prøver", format_integer_danish(doc["samples"]), True),
            _fact("Genomækvivalenter i alt", ge(doc["total_genome_equivalents"]), True),
            _fact("Bevillingens saldo før", format_danish(doc["balance_before_ore"]), True),
            _fact("Refusion i alt", format_danish(doc["total_ore"]), True),
            _fact("Bevillingens saldo efter", format_danish(doc["balance_after_ore"]), True),
        ]
    closed = local_moment(datetime.fromisoformat(doc["closed_at"]))
    parts.append(_fact("Lukket", closed + (f" af {doc['closed_by']}" if region is None else "")))
    parts.append(_fact("Opgørelsens id", doc["statement_id"]))
    parts.append("</table>")
    if region is None:
        notes = []
        if doc["rate_dkk"] < doc["standard_rate_dkk"]:
            notes.append(
                "Satsen er begrænset af bevillingens saldo: saldoen rakte ikke til standardsatsen "
                "for månedens genomækvivalenter, så satsen er saldoen delt med genomækvivalenterne, "
                "rundet ned til hele kroner."
            )
        if doc["rate_stepped_down"]:
            notes.append(
                "Satsen er sat én krone ned, fordi afrundingen ellers ville have overtrukket bevillingen."
            )
        if doc["forced"]:
            notes.append("Måneden er lukket før dens udgang (tvungen lukning).")
        parts += [f"<p class=note>{escape(n)}</p>" for n in notes]
    return parts


def _regions_table(doc: dict[str, Any], region: Region | None, ge: Callable[[str], str]) -> list[str]:
    parts = [
        "<table><caption>Pr. region</caption>",
        _head([("Region", False), ("Prøver", True), (GE_HEADER, True), ("Refusion", True)]),
        "<tbody>",
    ]
    for r in doc["regions"]:
        parts.append(
            _row(
                [
                    (region_name(r["region"]), False),
                    (format_integer_danish(r["samples"]), True),
                    (ge(r["genome_equivalents"]), True),
                    (format_danish(r["amount_ore"]), True),
                ]
            )
        )
    parts.append("</tbody>")
    if region is None:
        total = [
            ("I alt", False),
            (format_integer_danish(doc["samples"]), True),
            (ge(doc["total_genome_equivalents"]), True),
            (format_danish(doc["total_ore"]), True),
        ]
        parts.append("<tfoot>" + _row(total) + "</tfoot>")
    parts.append("</table>")
    return parts


def _lines_table(doc: dict[str, Any], ge: Callable[[str], str]) -> list[str]:
    """The lines grouped by region, a row group each under its region's name: the region is
    said once, which leaves the columns room on an A4 page."""
    columns = [
        ("Afdeling", False),
        ("Analyse", False),
        ("Modtaget", False),
        ("Prøver", True),
        (GE_HEADER, True),
        ("Refusion", True),
    ]
    parts = ["<table><caption>Pr. region, afdeling og analysetype</caption>", _head(columns)]
    by_region: dict[str, list[dict[str, Any]]] = {}
    for ln in doc["lines"]:
        by_region.setdefault(ln["region"], []).append(ln)
    for region, lines in by_region.items():
        parts.append(
            f"<tbody><tr class=group><th colspan={len(columns)} scope=rowgroup>"
            f"{escape(region_name(region))}</th></tr>"
        )
        for ln in lines:
            received = month_name(ln["received_month"]) + (" (efterregulering)" if ln["adjustment"] else "")
            parts.append(
                _row(
                    [
                        (ln["department"], False),
                        (analysis_name(ln["analysis_type"]), False),
                        (received, False),
                        (format_integer_danish(ln["samples"]), True),
                        (ge(ln["genome_equivalents"]), True),
                        (format_danish(ln["amount_ore"]), True),
                    ]
                )
            )
        parts.append("</tbody>")
    parts.append("</table>")
    return parts


def _ledger_table(ledger: Sequence[LedgerEntry]) -> list[str]:
    parts = [
        "<table><caption>Posteringer på bevillingen</caption>",
        _head(
            [
                ("Dato", False),
                ("Postering", False),
                ("Beløb", True),
                ("Saldo efter", True),
                ("Bogført af", False),
                ("Note", False),
            ]
        ),
        "<tbody>",
    ]
    for e in ledger:
        what = ledger_kind_name(e.kind) + (f" {month_name(e.month)}" if e.month else "")
        parts.append(
            _row(
                [
                    (local_date(e.recorded_at), False),
                    (what, False),
                    (("+" if e.amount_ore > 0 else "") + format_danish(e.amount_ore), True),
                    (format_danish(e.balance_after_ore), True),
                    (e.recorded_by, False),
                    (ledger_note(e.kind, e.note), False),
                ]
            )
        )
    parts.append("</tbody></table>")
    return parts


def render_html(
    statement: Statement,
    region: Region | None,
    months: Sequence[MonthGe],
    ledger: Sequence[LedgerEntry],
) -> str:
    """The statement page in Danish, for screen and A4 paper. ``months`` and ``ledger`` feed
    the charts (ledger: national only).

    Genome equivalents are written with one precision for the whole page, the fewest
    decimals that write every one of them exactly (``ge_places``): a month of whole
    genomes reads 2.016,00, a month of small samples 0,000043, never 0,00 beside money paid.
    """
    doc = view(statement, region)
    regions = [region] if region is not None else list(Region)
    values = [doc.get("total_genome_equivalents", "0")]
    values += [r["genome_equivalents"] for r in doc["regions"]]
    values += [ln["genome_equivalents"] for ln in doc["lines"]]
    places = ge_places(Decimal(v) for v in values)

    def ge(value: str) -> str:
        return format_ge_danish(Decimal(value), places)

    title = f"Refusionsopgørelse for {month_name(doc['month'])}" + (
        f" – {region_name(region)}" if region else ""
    )
    parts = [
        "<!DOCTYPE html><html lang='da'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        "<p class=sub>Novo Nordisk Fondens bevilling til Nationalt Genom Center: refusion pr. "
        "genomækvivalent til regionerne</p>",
    ]
    parts += _facts(doc, region, ge)
    parts += _regions_table(doc, region, ge)
    parts += _lines_table(doc, ge)
    parts.append("<h2>Genomækvivalenter pr. region og måned</h2>")
    parts.append(f"<figure>{ge_chart(months, regions)}</figure>")
    if region is None:
        parts.append("<h2>Bevillingens saldo over tid</h2>")
        parts.append(f"<figure>{balance_chart(ledger)}</figure>")
        parts += _ledger_table(ledger)
    parts.append(
        f"<p class=note>Beløb i danske kroner. Tidspunkter i dansk tid (Europe/Copenhagen). "
        f"Genomækvivalenter med {places} decimaler.</p>"
    )
    parts.append("</body></html>\n")
    return "".join(parts)


# -- what the CLI and the HTTP API serve ---------------------------------------------------
class NoStatement(LookupError):
    """The month has no statement (yet)."""


def months_ge(store: BillingStore) -> list[MonthGe]:
    """Closed months from their statements, open months from their accruals so far."""
    closed = [MonthGe(s.month, True, {r.region: r.ge_micro for r in s.regions}) for s in store.statements()]
    still_open = [MonthGe(month, False, micro) for month, micro in store.open_months()]
    return sorted(closed + still_open, key=lambda m: m.month)


def render(store: BillingStore, month: str, fmt: str, region: Region | None) -> str:
    """The statement of ``month`` in ``fmt`` as ``region`` (None: national) may read it."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: choose one of {', '.join(FORMATS)}")
    statement = store.statement(month)
    if statement is None:
        # Only the national operator hears what has accrued so far: it is the national total,
        # which a region may not learn (with its own figures it reveals the others').
        open_micro = dict(store.open_months()).get(month) if region is None else None
        so_far = (
            f"; {format_ge_exact(micro_to_ge(sum(open_micro.values())))} genome equivalents accrued so far"
            if open_micro
            else ""
        )
        raise NoStatement(f"{month} is not closed, so it has no statement yet{so_far}")
    if fmt == "json":
        return render_json(statement, region)
    if fmt == "csv":
        return render_csv(statement, region)
    return render_html(statement, region, months_ge(store), store.ledger() if region is None else [])
