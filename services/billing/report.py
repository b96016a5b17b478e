"""Finance's view of a statement: CSV and JSON (plain numbers) and HTML (Danish amounts and
server-drawn SVG charts, readable with JavaScript off and in a mail client).

A region sees its own lines only: the rate, its region's refund and its departments. The
national totals and the grant balance are left out of its view, because together with its
own figures they would reveal the other regions' production. The national operator sees all.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from html import escape
from typing import Any

from services.billing.money import format_danish, format_ge_danish, micro_to_ge, ore_to_dkk
from services.billing.refund import Statement
from services.billing.store import BillingStore, LedgerEntry
from shared.events import Region
from shared.spreadsheet import SafeDictWriter

FORMATS = ("csv", "json", "html")
MEDIA_TYPES = {"csv": "text/csv", "json": "application/json", "html": "text/html"}
REGION_COLOURS = {
    Region.HOVEDSTADEN: "#1f4e79",
    Region.SJAELLAND: "#2e8b57",
    Region.NORDJYLLAND: "#c0504d",
    Region.MIDTJYLLAND: "#e69f00",
    Region.SYDDANMARK: "#7b5ea7",
}
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


@dataclass(frozen=True)
class MonthGe:
    """Genome equivalents of one month per region, closed or still open."""

    month: str
    closed: bool
    region_micro: dict[Region, int]


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


# -- charts ------------------------------------------------------------------------------
def _svg(width: int, height: int, title: str, body: Sequence[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>" + "".join(body) + "</svg>"
    )


def _nice_ceiling(value: Decimal) -> Decimal:
    """A round axis maximum at or above ``value`` (1, 2 or 5 times a power of ten)."""
    if value <= 0:
        return Decimal(1)
    power = Decimal(10) ** (len(str(int(value))) - 1)
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def ge_chart(months: Sequence[MonthGe], regions: Sequence[Region]) -> str:
    """Grouped bars: genome equivalents per region, per month; open months drawn hatched."""
    width, height, left, bottom, top = 760, 300, 70, 50, 20
    plot_w, plot_h = width - left - 150, height - bottom - top
    peak = max((micro_to_ge(m.region_micro.get(r, 0)) for m in months for r in regions), default=Decimal(0))
    ceiling = _nice_ceiling(peak)
    body = [
        "<defs><pattern id='open' width='6' height='6' patternUnits='userSpaceOnUse' "
        "patternTransform='rotate(45)'><rect width='3' height='6' fill='#ffffff' opacity='0.6'/></pattern></defs>"
    ]
    for i in range(5):
        value = ceiling * i / 4
        y = top + plot_h - plot_h * i / 4
        body.append(f"<line x1='{left}' y1='{y:.1f}' x2='{left + plot_w}' y2='{y:.1f}' stroke='#dddddd'/>")
        body.append(
            f"<text x='{left - 6}' y='{y + 4:.1f}' font-size='11' text-anchor='end'>"
            f"{escape(format_ge_danish(value, 0))}</text>"
        )
    slot = plot_w / max(len(months), 1)
    bar = slot * 0.8 / max(len(regions), 1)
    for mi, month in enumerate(months):
        x0 = left + mi * slot + slot * 0.1
        for ri, region in enumerate(regions):
            ge = micro_to_ge(month.region_micro.get(region, 0))
            h = float(plot_h * ge / ceiling)
            x, y = x0 + ri * bar, top + plot_h - h
            label = f"{month.month} {region.value}: {format_ge_danish(ge)} GE" + (
                "" if month.closed else " (open)"
            )
            body.append(
                f"<rect x='{x:.1f}' y='{y:.1f}' width='{bar:.1f}' height='{h:.1f}' "
                f"fill='{REGION_COLOURS[region]}'><title>{escape(label)}</title></rect>"
            )
            if not month.closed:
                body.append(
                    f"<rect x='{x:.1f}' y='{y:.1f}' width='{bar:.1f}' height='{h:.1f}' fill='url(#open)'/>"
                )
        body.append(
            f"<text x='{x0 + slot * 0.4:.1f}' y='{top + plot_h + 16}' font-size='11' text-anchor='middle'>"
            f"{escape(month.month)}{'' if month.closed else ' (open)'}</text>"
        )
    body.append(
        f"<line x1='{left}' y1='{top + plot_h}' x2='{left + plot_w}' y2='{top + plot_h}' stroke='#333333'/>"
    )
    for ri, region in enumerate(regions):
        y = top + ri * 18
        body.append(
            f"<rect x='{left + plot_w + 16}' y='{y}' width='12' height='12' fill='{REGION_COLOURS[region]}'/>"
        )
        body.append(
            f"<text x='{left + plot_w + 34}' y='{y + 10}' font-size='12'>{escape(region.value)}</text>"
        )
    body.append(
        f"<text x='{left}' y='{height - 8}' font-size='11'>genome equivalents per region and month "
        "of billing; hatched: not closed yet</text>"
    )
    return _svg(width, height, "Genome equivalents per region per month", body)


def balance_chart(entries: Sequence[LedgerEntry]) -> str:
    """A step line of the grant balance after each ledger entry, in DKK."""
    width, height, left, bottom, top = 760, 300, 110, 100, 20
    plot_w, plot_h = width - left - 30, height - bottom - top
    peak = max((Decimal(e.balance_after_ore) / 100 for e in entries), default=Decimal(0))
    ceiling = _nice_ceiling(peak)
    body: list[str] = []
    for i in range(5):
        ore = int(ceiling * 100 * i / 4)
        y = top + plot_h - plot_h * i / 4
        body.append(f"<line x1='{left}' y1='{y:.1f}' x2='{left + plot_w}' y2='{y:.1f}' stroke='#dddddd'/>")
        body.append(
            f"<text x='{left - 6}' y='{y + 4:.1f}' font-size='11' text-anchor='end'>{escape(format_danish(ore))}</text>"
        )
    step = plot_w / max(len(entries), 1)
    points: list[tuple[float, float]] = []
    for i, entry in enumerate(entries):
        y = top + plot_h - float(plot_h * Decimal(entry.balance_after_ore) / (ceiling * 100))
        x = left + i * step
        if points:
            points.append((x, points[-1][1]))
        points.append((x, y))
        points.append((x + step, y))
        label = (
            f"{entry.recorded_at:%Y-%m-%d} {entry.kind}{' ' + entry.month if entry.month else ''}: "
            f"{format_danish(entry.balance_after_ore)}"
        )
        body.append(
            f"<circle cx='{x:.1f}' cy='{y:.1f}' r='3' fill='#1f4e79'><title>{escape(label)}</title></circle>"
        )
        body.append(
            f"<text x='{x + 2:.1f}' y='{top + plot_h + 14}' font-size='10' "
            f"transform='rotate(30 {x + 2:.1f} {top + plot_h + 14})'>"
            f"{escape(f'{entry.recorded_at:%Y-%m-%d}')} {escape(entry.month or entry.kind)}</text>"
        )
    if points:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        body.insert(0, f"<polyline points='{path}' fill='none' stroke='#1f4e79' stroke-width='2'/>")
    body.append(
        f"<line x1='{left}' y1='{top + plot_h}' x2='{left + plot_w}' y2='{top + plot_h}' stroke='#333333'/>"
    )
    return _svg(width, height, "Grant balance after each ledger entry", body)


# -- the page ----------------------------------------------------------------------------
_STYLE = (
    "body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}"
    "th,td{border:1px solid #ccc;padding:4px 8px}td.n{text-align:right;font-variant-numeric:tabular-nums}"
    "th{background:#f0f0f0}caption{text-align:left;font-weight:bold;padding:4px 0}"
)


def _row(cells: Sequence[tuple[str, bool]]) -> str:
    return "<tr>" + "".join(f"<td{' class=n' if num else ''}>{escape(c)}</td>" for c, num in cells) + "</tr>"


def render_html(
    statement: Statement,
    region: Region | None,
    months: Sequence[MonthGe],
    ledger: Sequence[LedgerEntry],
) -> str:
    """The statement page. ``months`` and ``ledger`` feed the charts (ledger: national only)."""
    doc = view(statement, region)
    regions = [region] if region is not None else list(Region)
    title = f"NNF refund statement {doc['month']}" + (f" - {region.value}" if region else "")
    parts = [
        f"<!DOCTYPE html><html lang='da'><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>",
        "<table><caption>Statement</caption>",
        _row([("Statement", False), (doc["statement_id"], False)]),
        _row([("Rate per genome equivalent", False), (format_danish(doc["rate_dkk"] * 100), True)]),
    ]
    if region is None:
        parts += [
            _row([("Standard rate", False), (format_danish(doc["standard_rate_dkk"] * 100), True)]),
            _row(
                [
                    ("Genome equivalents", False),
                    (format_ge_danish(Decimal(doc["total_genome_equivalents"])), True),
                ]
            ),
            _row([("Balance before", False), (format_danish(doc["balance_before_ore"]), True)]),
            _row([("Refund total", False), (format_danish(doc["total_ore"]), True)]),
            _row([("Balance after", False), (format_danish(doc["balance_after_ore"]), True)]),
            _row([("Closed", False), (f"{doc['closed_at']} by {doc['closed_by']}", False)]),
        ]
        if doc["forced"]:
            parts.append(_row([("Forced close", False), ("closed before the month ended", False)]))
        if doc["rate_stepped_down"]:
            parts.append(
                _row(
                    [
                        ("Rate", False),
                        ("stepped down one krone: rounding would have overdrawn the grant", False),
                    ]
                )
            )
    parts.append("</table>")
    parts.append(
        "<table><caption>Per region</caption><tr><th>Region</th><th>Samples</th>"
        "<th>Genome equivalents</th><th>Refund</th></tr>"
    )
    for r in doc["regions"]:
        parts.append(
            _row(
                [
                    (r["region"], False),
                    (str(r["samples"]), True),
                    (format_ge_danish(Decimal(r["genome_equivalents"])), True),
                    (format_danish(r["amount_ore"]), True),
                ]
            )
        )
    parts.append("</table>")
    parts.append(
        "<table><caption>Per region, department and analysis type</caption><tr><th>Region</th>"
        "<th>Department</th><th>Analysis</th><th>Received</th><th>Samples</th>"
        "<th>Genome equivalents</th><th>Refund</th></tr>"
    )
    for ln in doc["lines"]:
        received = ln["received_month"] + (" (adjustment)" if ln["adjustment"] else "")
        parts.append(
            _row(
                [
                    (ln["region"], False),
                    (ln["department"], False),
                    (ln["analysis_type"], False),
                    (received, False),
                    (str(ln["samples"]), True),
                    (format_ge_danish(Decimal(ln["genome_equivalents"])), True),
                    (format_danish(ln["amount_ore"]), True),
                ]
            )
        )
    parts.append("</table>")
    parts.append("<h2>Genome equivalents per region per month</h2>")
    parts.append(ge_chart(months, regions))
    if region is None:
        parts.append("<h2>Grant balance over time</h2>")
        parts.append(balance_chart(ledger))
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
            f"; {format_ge_danish(micro_to_ge(sum(open_micro.values())))} genome equivalents accrued so far"
            if open_micro
            else ""
        )
        raise NoStatement(f"{month} is not closed, so it has no statement yet{so_far}")
    if fmt == "json":
        return render_json(statement, region)
    if fmt == "csv":
        return render_csv(statement, region)
    return render_html(statement, region, months_ge(store), store.ledger() if region is None else [])
