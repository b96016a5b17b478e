"""The catalogue's search filters and its keyset cursor: validated before any query runs.

One model serves the HTTP API and the CLI, so both accept and refuse the same things. An
unknown parameter is an error (422), not silently ignored: a misspelt filter would
otherwise return the whole catalogue to a caller who believes it filtered.
"""

from __future__ import annotations

import base64
import binascii
import json
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.api import InvalidParameters, parse_parameters
from shared.events import COPENHAGEN, AnalysisType, Region, SampleStatus

M = TypeVar("M", bound=BaseModel)
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(2999, 12, 31)
"""The receipt days a filter may name: far beyond any sample, and far from ``date``'s own
ends, where the Copenhagen-to-UTC conversion of a day would overflow."""


class InvalidQuery(Exception):
    """A filter the catalogue refuses; ``problems`` names each parameter and what is wrong."""

    def __init__(self, problems: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{p['parameter']}: {p['message']}" for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the (received_at, region, sample_id) of its last row, newest first.

    The region is part of the position because it is part of the sample: two regions'
    samples of one pseudonym received in the same instant are two rows, and a page boundary
    between them must neither skip nor repeat one.
    """

    received_at: datetime
    region: Region
    sample_id: str

    def encode(self) -> str:
        raw = json.dumps(
            [self.received_at.astimezone(UTC).isoformat(), self.region.value, self.sample_id]
        ).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            moment, region, sample_id = json.loads(raw)
            parsed = datetime.fromisoformat(moment)
            if (
                parsed.tzinfo is None
                or not isinstance(sample_id, str)
                or not sample_id
                or any(unicodedata.category(c) in ("Cc", "Cs") for c in sample_id)
            ):
                raise ValueError("malformed")
            where = Region(region)
            moment_utc = parsed.astimezone(UTC)
        except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeDecodeError) as exc:
            raise ValueError("not a cursor this catalogue issued") from exc
        return cls(moment_utc, where, sample_id)


class SampleFilters(BaseModel):
    """Filters of ``GET /v1/samples`` and ``genomhub catalogue search``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    region: Region | None = Field(
        default=None, description="Only this region's samples; a region's token may name only its own."
    )
    analysis: AnalysisType | None = Field(default=None, description="Analysis type.")
    status: SampleStatus | None = Field(
        default=None, description="Outcome of the sample's newest submission."
    )
    received_from: date | None = Field(
        default=None,
        description=f"First day of receipt, inclusive (Europe/Copenhagen calendar); {FIRST_DAY} to {LAST_DAY}.",
    )
    received_to: date | None = Field(
        default=None,
        description="Last day of receipt, inclusive (Europe/Copenhagen calendar); not before "
        f"received_from; {FIRST_DAY} to {LAST_DAY}.",
    )
    q: str | None = Field(
        default=None,
        min_length=2,
        max_length=100,
        description="Case-insensitive substring of sample id, patient pseudonym, submission id, "
        "department or platform.",
    )
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="Page size.")
    cursor: str | None = Field(
        default=None,
        description="The `next_cursor` of the previous page (opaque).",
        # The alphabet of every cursor issued (base64url without padding), for generated
        # requests to try mostly well-formed ones; only the validator knows which are real.
        json_schema_extra={"pattern": "^[A-Za-z0-9_-]+$"},
    )

    @field_validator("received_from", "received_to", mode="before")
    @classmethod
    def _plain_date(cls, value: Any) -> Any:
        # Only YYYY-MM-DD: a bare number or a datetime would be read as something else.
        if isinstance(value, str) and (len(value) != 10 or value[4] != "-" or value[7] != "-"):
            raise ValueError("expected a date YYYY-MM-DD")
        return value

    @field_validator("received_from", "received_to")
    @classmethod
    def _within_range(cls, value: date | None) -> date | None:
        if value is not None and not FIRST_DAY <= value <= LAST_DAY:
            raise ValueError(f"must be between {FIRST_DAY} and {LAST_DAY}")
        return value

    @field_validator("q")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        # A NUL ends the string in SQLite's LIKE (the prefix matched) and PostgreSQL refuses
        # it; no catalogue value holds a control character, so none can be searched for.
        if value is not None and any(unicodedata.category(c) in ("Cc", "Cs") for c in value):
            raise ValueError("must not contain control characters")
        return value

    @field_validator("cursor")
    @classmethod
    def _cursor(cls, value: str | None) -> str | None:
        if value is not None:
            Cursor.decode(value)
        return value

    @field_validator("received_to")
    @classmethod
    def _ordered(cls, value: date | None, info: Any) -> date | None:
        start = info.data.get("received_from")
        if value is not None and start is not None and value < start:
            raise ValueError("received_to is before received_from")
        return value

    @property
    def after(self) -> Cursor | None:
        return Cursor.decode(self.cursor) if self.cursor else None

    @property
    def received_since(self) -> datetime | None:
        """Start of ``received_from`` in Copenhagen, as UTC."""
        return receipt_bounds(self.received_from, self.received_to)[0]

    @property
    def received_before(self) -> datetime | None:
        """Start of the day after ``received_to`` in Copenhagen, as UTC (exclusive bound)."""
        return receipt_bounds(self.received_from, self.received_to)[1]


class StatsFilters(BaseModel):
    """Filters of ``GET /v1/stats``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    region: Region | None = Field(
        default=None, description="Only this region's statistics; a region's token may name only its own."
    )


def receipt_bounds(first: date | None, last: date | None) -> tuple[datetime | None, datetime | None]:
    """The instants a range of days of receipt covers on Copenhagen's calendar, as UTC: from
    the start of ``first`` up to, not including, the start of the day after ``last``."""
    since = datetime.combine(first, time(0), tzinfo=COPENHAGEN).astimezone(UTC) if first else None
    before = (
        datetime.combine(last + timedelta(days=1), time(0), tzinfo=COPENHAGEN).astimezone(UTC)
        if last
        else None
    )
    return since, before


def parse_query(model: type[M], params: Mapping[str, str], repeated: set[str]) -> M:
    """``params`` as ``model``, or :class:`InvalidQuery` listing every problem: the HTTP API's
    own parameter check (``shared.api.parse_parameters``), for the CLI too."""
    try:
        return parse_parameters(model, params, repeated)
    except InvalidParameters as exc:
        raise InvalidQuery([{"parameter": p.field, "message": p.message} for p in exc.problems]) from exc
