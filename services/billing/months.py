"""Billing months: a sample belongs to the month NGC received it, in Danish time.

Months are ``YYYY-MM`` strings (the events' ``Month``), ordered as strings. A month ends at
midnight Europe/Copenhagen on the first of the next month, whatever the season, so a sample
received at 23:30 UTC on 31 January (00:30 on 1 February in Copenhagen) is February's.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from shared.events import COPENHAGEN, month_of

__all__ = ["COPENHAGEN", "month_of"]
_MONTH = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")  # not \d, which takes any script's digits


def parse_month(text: str) -> str:
    """``text`` if it is a month ``YYYY-MM``, else a ValueError saying so."""
    if not _MONTH.fullmatch(text):  # not match with $: that lets "2026-01\n" through
        raise ValueError(f"{text!r} is not a month: write it YYYY-MM, e.g. 2026-01")
    return text


def next_month(month: str) -> str:
    year, mon = (int(x) for x in parse_month(month).split("-"))
    return f"{year + mon // 12:04d}-{mon % 12 + 1:02d}"


def month_start(month: str) -> datetime:
    year, mon = (int(x) for x in parse_month(month).split("-"))
    return datetime(year, mon, 1, tzinfo=COPENHAGEN)


def month_end(month: str) -> datetime:
    """The first instant after ``month``, in Copenhagen."""
    return month_start(next_month(month))


def has_ended(month: str, now: datetime) -> bool:
    return now >= month_end(month)


def billed_month(received_month: str, last_closed: str | None) -> str:
    """Where a sample is billed: its month of receipt, or the first month after the last
    closed one when its own is closed already (a late arrival: an adjustment line there)."""
    if last_closed is None or received_month > last_closed:
        return received_month
    return next_month(last_closed)


def auto_close_due(month: str, now: datetime, days: int) -> bool:
    """Whether the automatic close of ``month`` is due ``days`` days after it ended."""
    return now >= month_end(month) + timedelta(days=days)
