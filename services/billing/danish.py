"""The statement page's own Danish words: the grant ledger's kinds and notes, and a chart's
month labels.

The statement is handed to the Novo Nordisk Foundation, so it speaks Danish; the words every
page shares (regions, analyses, months, Copenhagen's moments) are :mod:`shared.danish`'s.
The machine formats (CSV, JSON) keep the events' own values; only the page translates them.
"""

from __future__ import annotations

LEDGER_KIND_NAMES: dict[str, str] = {
    "opening": "Åbningssaldo",
    "top-up": "Tilskud",
    "month-close": "Refusion",
    "forced-close": "Refusion (tvungen lukning)",
}

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


def ledger_kind_name(kind: str) -> str:
    """A ledger entry's kind in Danish; a kind this page does not know is shown as stored."""
    return LEDGER_KIND_NAMES.get(kind, kind)


def month_abbreviation(month: str) -> str:
    """``2026-01`` as ``jan. 2026``: a chart's axis label."""
    year, mon = month.split("-")
    return f"{MONTH_ABBREVIATIONS[int(mon) - 1]} {year}"


SYSTEM_NOTES = {"from the settings": "fra indstillingerne (GENOMHUB_BILLING_OPENING_BALANCE_DKK)"}
"""Notes billing writes itself, in Danish; a note finance typed is shown as typed."""
CLOSE_KINDS = frozenset({"month-close", "forced-close"})


def ledger_note(kind: str, note: str) -> str:
    """A ledger entry's note for the page. A close's note is billing's own sentence, and the
    entry's kind and month say it already (and the statement has the rate), so it is left out."""
    if kind in CLOSE_KINDS:
        return ""
    return SYSTEM_NOTES.get(note, note)
