"""The words and dates of the statement page as finance reads it, in Danish.

The statement is handed to the Novo Nordisk Foundation, so it speaks Danish: regions by
their names (the event's ``sjaelland`` is Region Sjælland), months by name, and moments in
Copenhagen's local time (the events carry UTC). The machine formats (CSV, JSON) keep the
events' own values; only the page translates them.
"""

from __future__ import annotations

from datetime import datetime

from shared.events import COPENHAGEN, AnalysisType, Region

REGION_NAMES: dict[Region, str] = {
    Region.HOVEDSTADEN: "Region Hovedstaden",
    Region.SJAELLAND: "Region Sjælland",
    Region.SYDDANMARK: "Region Syddanmark",
    Region.MIDTJYLLAND: "Region Midtjylland",
    Region.NORDJYLLAND: "Region Nordjylland",
}

ANALYSIS_NAMES: dict[AnalysisType, str] = {
    AnalysisType.WGS: "Helgenom (WGS)",
    AnalysisType.WES: "Eksom (WES)",
    AnalysisType.PANEL: "Genpanel",
    AnalysisType.LONG_READ_WGS: "Helgenom, lange læsninger",
}

LEDGER_KIND_NAMES: dict[str, str] = {
    "opening": "Åbningssaldo",
    "top-up": "Tilskud",
    "month-close": "Refusion",
    "forced-close": "Refusion (tvungen lukning)",
}

MONTH_NAMES = (
    "januar",
    "februar",
    "marts",
    "april",
    "maj",
    "juni",
    "juli",
    "august",
    "september",
    "oktober",
    "november",
    "december",
)
MONTH_ABBREVIATIONS = (
    "jan.",
    "feb.",
    "mar.",
    "apr.",
    "maj",
    "jun.",
    "jul.",
    "aug.",
    "sep.",
    "okt.",
    "nov.",
    "dec.",
)


def region_name(region: str | Region) -> str:
    return REGION_NAMES[Region(region)]


def analysis_name(analysis: str | AnalysisType) -> str:
    return ANALYSIS_NAMES[AnalysisType(analysis)]


def ledger_kind_name(kind: str) -> str:
    """A ledger entry's kind in Danish; a kind this page does not know is shown as stored."""
    return LEDGER_KIND_NAMES.get(kind, kind)


def month_name(month: str) -> str:
    """``2026-01`` as ``januar 2026``."""
    year, mon = month.split("-")
    return f"{MONTH_NAMES[int(mon) - 1]} {year}"


def month_abbreviation(month: str) -> str:
    """``2026-01`` as ``jan. 2026``: a chart's axis label."""
    year, mon = month.split("-")
    return f"{MONTH_ABBREVIATIONS[int(mon) - 1]} {year}"


def local_date(moment: datetime) -> str:
    """The Copenhagen calendar day of an aware instant, ``02.12.2026``."""
    return f"{moment.astimezone(COPENHAGEN):%d.%m.%Y}"


def local_moment(moment: datetime) -> str:
    """An aware instant in Copenhagen's time to the minute, ``2. december 2026 kl. 00.30 (CET)``.

    The zone's abbreviation is written out, so a reader knows the hour is local (CET in
    winter, CEST in summer) and not the UTC the events carry.
    """
    local = moment.astimezone(COPENHAGEN)
    return f"{local.day}. {MONTH_NAMES[local.month - 1]} {local.year} kl. {local:%H.%M} ({local.tzname()})"


SYSTEM_NOTES = {"from the settings": "fra indstillingerne (GENOMHUB_BILLING_OPENING_BALANCE_DKK)"}
"""Notes billing writes itself, in Danish; a note finance typed is shown as typed."""
CLOSE_KINDS = frozenset({"month-close", "forced-close"})


def ledger_note(kind: str, note: str) -> str:
    """A ledger entry's note for the page. A close's note is billing's own sentence, and the
    entry's kind and month say it already (and the statement has the rate), so it is left out."""
    if kind in CLOSE_KINDS:
        return ""
    return SYSTEM_NOTES.get(note, note)
