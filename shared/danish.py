"""Danish words and moments of what people read: regions by their names (the event's
``sjaelland`` is Region Sjælland), analyses, months by name, and moments in Copenhagen's local
time (the events carry UTC). Finance's statement page and the regions' portal speak them;
machine formats keep the events' own values.
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


def region_name(region: str | Region) -> str:
    return REGION_NAMES[Region(region)]


def analysis_name(analysis: str | AnalysisType) -> str:
    return ANALYSIS_NAMES[AnalysisType(analysis)]


def month_name(month: str) -> str:
    """``2026-01`` as ``januar 2026``."""
    year, mon = month.split("-")
    return f"{MONTH_NAMES[int(mon) - 1]} {year}"


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
