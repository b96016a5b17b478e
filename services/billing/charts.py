"""The statement's charts: SVG drawn on the server, readable with JavaScript off, in a mail
client and on paper, at any magnitude.

A month's genome equivalents may be 2,016 (the `analysis` rule) or 0.000215 (five small
samples under the `bases` rule), and a grant balance runs from 532.281 kr. to a few øre.
So the axes count in whole units of what they show (micro-GE, øre): every tick is a
multiple of a step of 1, 2 or 5 times a power of ten that is at least one unit, hence
ticks are distinct and exact, and each is written with just the decimals its step needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from html import escape

from services.billing.danish import ledger_kind_name, month_abbreviation
from services.billing.money import GE_PLACES, ORE_PER_KRONE, format_danish, format_decimal_danish
from services.billing.store import LedgerEntry
from shared.danish import local_date, month_name, region_name
from shared.events import MICRO_GE, Region

REGION_COLOURS = {
    Region.HOVEDSTADEN: "#1f4e79",
    Region.SJAELLAND: "#2e8b57",
    Region.NORDJYLLAND: "#c0504d",
    Region.MIDTJYLLAND: "#b07800",
    Region.SYDDANMARK: "#7b5ea7",
}
MAX_INTERVALS = 5
MIN_BAR_PX = 2.0
"""A bar of a non-zero value is never thinner than this, however small beside the tallest."""
LABEL_GAP_PX = 8.0
CHAR_PX = 6.2
"""About the width of one character of the axis font (11 px sans-serif)."""


@dataclass(frozen=True)
class MonthGe:
    """Genome equivalents of one month per region, closed or still open."""

    month: str
    closed: bool
    region_micro: dict[Region, int]


@dataclass(frozen=True)
class Axis:
    """Ticks ``0, step, 2 step, ... top`` in whole units (micro-GE or øre)."""

    step: int
    top: int

    @property
    def ticks(self) -> list[int]:
        return list(range(0, self.top + 1, self.step))


def nice_axis(peak: int, empty_top: int) -> Axis:
    """The axis for values up to ``peak`` units: the smallest step of 1, 2 or 5 x 10^k units
    that covers ``peak`` in at most five intervals. With nothing to show (``peak`` 0) the
    axis runs to ``empty_top`` units, so an empty chart still reads as a scale."""
    if peak <= 0:
        peak = empty_top
    power = 1
    while True:
        for multiple in (1, 2, 5):
            step = multiple * power
            intervals = -(-peak // step)
            if intervals <= MAX_INTERVALS:
                return Axis(step, step * intervals)
        power *= 10


def places_for(step: int, places_per_unit: int) -> int:
    """Decimals that write every multiple of ``step`` exactly, for a unit of
    ``10 ** -places_per_unit`` (micro-GE: 6; øre: 2)."""
    places = places_per_unit
    while places > 0 and step % 10 ** (places_per_unit - places + 1) == 0:
        places -= 1
    return places


def _thin(positions: Sequence[float], widths: Sequence[float]) -> list[bool]:
    """Which of the labels at ``positions`` (centred, ``widths`` wide) to draw so that none
    overlaps the last drawn: the first is always drawn."""
    shown: list[bool] = []
    right = float("-inf")
    for x, w in zip(positions, widths, strict=True):
        keep = x - w / 2 >= right + LABEL_GAP_PX
        shown.append(keep)
        if keep:
            right = x + w / 2
    return shown


def _svg(width: int, height: int, title: str, body: Sequence[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
        f"font-family='sans-serif'>"
        f"<title>{escape(title)}</title>" + "".join(body) + "</svg>"
    )


def ge_label(micro: int, places: int) -> str:
    return format_decimal_danish(Decimal(micro) / MICRO_GE, places)


def ge_chart(months: Sequence[MonthGe], regions: Sequence[Region]) -> str:
    """Grouped bars: genome equivalents per region, per month; open months drawn hatched."""
    width, height, left, bottom, top, legend = 760, 320, 90, 60, 20, 170
    plot_w, plot_h = width - left - legend, height - bottom - top
    peak = max((m.region_micro.get(r, 0) for m in months for r in regions), default=0)
    axis = nice_axis(peak, empty_top=MICRO_GE)
    places = places_for(axis.step, GE_PLACES)
    body = [
        "<defs><pattern id='open' width='6' height='6' patternUnits='userSpaceOnUse' "
        "patternTransform='rotate(45)'><rect width='3' height='6' fill='#ffffff' opacity='0.6'/>"
        "</pattern></defs>"
    ]
    body += [
        line
        for tick in axis.ticks
        for line in _tick(tick, axis, left, left + plot_w, top, plot_h, ge_label(tick, places))
    ]
    slot = plot_w / max(len(months), 1)
    bar = slot * 0.8 / max(len(regions), 1)
    centres: list[float] = []
    labels: list[str] = []
    for mi, month in enumerate(months):
        x0 = left + mi * slot + slot * 0.1
        for ri, region in enumerate(regions):
            micro = month.region_micro.get(region, 0)
            h = plot_h * micro / axis.top
            if micro > 0:
                h = max(h, MIN_BAR_PX)
            x, y = x0 + ri * bar, top + plot_h - h
            label = (
                f"{month_name(month.month)}, {region_name(region)}: "
                f"{ge_label(micro, GE_PLACES)} genomækvivalenter" + ("" if month.closed else " (åben)")
            )
            body.append(
                f"<rect class='bar' x='{x:.1f}' y='{y:.1f}' width='{bar:.1f}' height='{h:.1f}' "
                f"fill='{REGION_COLOURS[region]}'><title>{escape(label)}</title></rect>"
            )
            if not month.closed:
                body.append(
                    f"<rect x='{x:.1f}' y='{y:.1f}' width='{bar:.1f}' height='{h:.1f}' fill='url(#open)'/>"
                )
        centres.append(x0 + slot * 0.4)
        labels.append(month_abbreviation(month.month) + ("" if month.closed else " (åben)"))
    shown = _thin(centres, [len(t) * CHAR_PX for t in labels])
    for x, text, keep in zip(centres, labels, shown, strict=True):
        if keep:
            body.append(
                f"<text class='x-tick' x='{x:.1f}' y='{top + plot_h + 16}' font-size='11' "
                f"text-anchor='middle'>{escape(text)}</text>"
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
            f"<text class='legend' x='{left + plot_w + 34}' y='{y + 10}' font-size='12'>"
            f"{escape(region_name(region))}</text>"
        )
    body.append(
        f"<text x='{left}' y='{height - 12}' font-size='11'>Genomækvivalenter pr. region og "
        "opgørelsesmåned; skraveret: måneden er ikke lukket endnu</text>"
    )
    return _svg(width, height, "Genomækvivalenter pr. region og måned", body)


def _tick(
    tick: int, axis: Axis, left: float, right: float, top: float, plot_h: float, text: str
) -> list[str]:
    y = top + plot_h - plot_h * tick / axis.top
    return [
        f"<line x1='{left}' y1='{y:.1f}' x2='{right}' y2='{y:.1f}' stroke='#dddddd'/>",
        f"<text class='y-tick' x='{left - 6}' y='{y + 4:.1f}' font-size='11' "
        f"text-anchor='end'>{escape(text)}</text>",
    ]


def kroner_label(ore: int, places: int) -> str:
    return f"{format_decimal_danish(Decimal(ore) / ORE_PER_KRONE, places)} kr."


def balance_chart(entries: Sequence[LedgerEntry]) -> str:
    """A step line of the grant balance over time, in kroner, with a point per ledger entry.

    The x axis is the calendar: entries of one day share its place, and each day that has
    entries is labelled once (labels that would overlap are left out, the points stay).
    """
    width, height, left, bottom, top, right = 760, 300, 110, 50, 20, 30
    plot_w, plot_h = width - left - right, height - bottom - top
    peak = max((e.balance_after_ore for e in entries), default=0)
    axis = nice_axis(peak, empty_top=100 * ORE_PER_KRONE)
    places = places_for(axis.step, 2)
    body: list[str] = [
        line
        for tick in axis.ticks
        for line in _tick(tick, axis, left, left + plot_w, top, plot_h, kroner_label(tick, places))
    ]
    if entries:
        first = min(e.recorded_at for e in entries)
        last = max(e.recorded_at for e in entries)
        span = max(last - first, timedelta(days=1))
        start, end = first - span * 0.04, last + span * 0.04
    else:
        start = end = datetime.min

    def x_of(moment: datetime) -> float:
        return left + plot_w * ((moment - start) / (end - start))

    def y_of(ore: int) -> float:
        return top + plot_h - plot_h * ore / axis.top

    points: list[tuple[float, float]] = []
    for entry in entries:
        x, y = x_of(entry.recorded_at), y_of(entry.balance_after_ore)
        if points:
            points.append((x, points[-1][1]))
        points.append((x, y))
        what = ledger_kind_name(entry.kind) + (f" {month_name(entry.month)}" if entry.month else "")
        sign = "+" if entry.amount_ore > 0 else ""
        label = (
            f"{local_date(entry.recorded_at)} {what}: {sign}{format_danish(entry.amount_ore)}, "
            f"saldo {format_danish(entry.balance_after_ore)}"
        )
        body.append(
            f"<circle cx='{x:.1f}' cy='{y:.1f}' r='3' fill='#1f4e79'><title>{escape(label)}</title></circle>"
        )
    if points:
        points.append((left + plot_w, points[-1][1]))
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        body.insert(0, f"<polyline points='{path}' fill='none' stroke='#1f4e79' stroke-width='2'/>")
    days: dict[str, float] = {}
    for entry in entries:
        days.setdefault(local_date(entry.recorded_at), x_of(entry.recorded_at))
    shown = _thin(list(days.values()), [len(d) * CHAR_PX for d in days])
    for (day, x), keep in zip(days.items(), shown, strict=True):
        if keep:
            body.append(
                f"<text class='x-tick' x='{x:.1f}' y='{top + plot_h + 16}' font-size='11' "
                f"text-anchor='middle'>{escape(day)}</text>"
            )
    body.append(
        f"<line x1='{left}' y1='{top + plot_h}' x2='{left + plot_w}' y2='{top + plot_h}' stroke='#333333'/>"
    )
    body.append(
        f"<text x='{left}' y='{height - 12}' font-size='11'>Bevillingens saldo efter hver postering, "
        "i kroner; et punkt pr. postering</text>"
    )
    return _svg(width, height, "Bevillingens saldo over tid", body)
