"""The spoke's catalogue search: the hub's filters over what a spoke holds.

A spoke answers the hub's ``GET /v1/samples`` filters (region, analysis, status, days of
receipt, a substring, a page and its cursor) for its records and summaries alike. A summary
carries only the month it was received in (discovery's granularity), so a range of days
finds the summaries of every month it touches, and a record by its moment of receipt. A
substring is looked for in what the entry holds: a summary's pseudonym, and a record's
submission id, department and platform too. Pages run in key order (region, pseudonym),
and the cursor is the last key of the page before.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from pydantic import Field, field_validator

from services.indexer.filters import SampleFilters, receipt_bounds
from shared.events import SAMPLE_KEY_SEPARATOR, AnalysisType, Region, SampleStatus

SEARCHED_FIELDS = ("sample_id", "submission_id", "department", "platform")
"""The body's fields a substring is looked for in (those a body has)."""


def searched_columns(body: Mapping[str, Any]) -> dict[str, Any]:
    """The columns the search filters on, from an entry's body as the hub signed it."""
    received_at = body.get("received_at")
    return {
        "region": body["region"],
        "analysis_type": body["analysis_type"],
        "status": body["status"],
        "received_month": body["received_month"],
        "received_at": datetime.fromisoformat(received_at) if received_at else None,
        "search_text": "\n".join(str(body[f]).lower() for f in SEARCHED_FIELDS if body.get(f)),
    }


def encode_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode_cursor(token: str) -> str:
    """The key a cursor names; ``ValueError`` for anything this spoke did not issue."""
    try:
        key = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValueError("not a cursor this spoke issued") from exc
    region, separator, pseudonym = key.partition(SAMPLE_KEY_SEPARATOR)
    if not separator or not pseudonym or region not in {r.value for r in Region} or not key.isprintable():
        raise ValueError("not a cursor this spoke issued")
    return key


@dataclass(frozen=True)
class Search:
    """What a page of the spoke's catalogue holds: every filter unset finds every sample."""

    kind: str | None = None
    region: Region | None = None
    analysis: AnalysisType | None = None
    status: SampleStatus | None = None
    received_from: date | None = None
    received_to: date | None = None
    q: str | None = None
    after: str | None = None
    """The key the page starts after."""
    limit: int | None = None
    """At most this many samples; None: all of them (the statistics, the portal's overview)."""

    @property
    def received_bounds(self) -> tuple[datetime | None, datetime | None]:
        """A record's bounds: the instants the days of receipt cover (the hub's)."""
        return receipt_bounds(self.received_from, self.received_to)

    @property
    def month_from(self) -> str | None:
        return self.received_from.strftime("%Y-%m") if self.received_from else None

    @property
    def month_to(self) -> str | None:
        return self.received_to.strftime("%Y-%m") if self.received_to else None


class SampleQuery(SampleFilters):
    """The hub's filters of ``GET /v1/samples``, and the kind of entry. A summary carries only
    its month of receipt and no submission, department or platform: the days of receipt find
    it by its month, ``q`` by its pseudonym (:mod:`services.spoke.search`). Cursors are the
    spoke's own (key order)."""

    kind: Literal["record", "summary"] | None = Field(
        default=None, description="Records (the region's own and granted) or summaries only."
    )
    region: Region | None = Field(default=None, description="The reporting region.")

    @field_validator("cursor")
    @classmethod
    def _cursor(cls, value: str | None) -> str | None:
        if value is not None:
            decode_cursor(value)
        return value

    def search(self) -> Search:
        return Search(
            kind=self.kind,
            region=self.region,
            analysis=self.analysis,
            status=self.status,
            received_from=self.received_from,
            received_to=self.received_to,
            q=self.q,
            after=decode_cursor(self.cursor) if self.cursor else None,
            limit=self.limit,
        )
