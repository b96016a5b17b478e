"""The answer to "does the national database hold data for this patient?", shaped for the asker.

At Beacon v2's granularity: per region that holds any, that it exists, how many samples,
which analysis types and which months of receipt. Record-level detail (the sample
pseudonyms, needed to request them) is given only for the asker's own region; NGC's
operators, who run the database, see it for every region. No storage location ever leaves.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, Field

from shared.events import AnalysisType, Region, month_of


@dataclass(frozen=True)
class KnownSample:
    """A sample of the access service's projection of the catalogue."""

    region: Region
    sample_id: str
    patient_id: str
    analysis_type: AnalysisType
    received_at: datetime
    accepted: bool


class RegionHolding(BaseModel):
    region: Region
    exists: bool = True
    count: int = Field(ge=1, description="Samples of the patient this region reported.")
    analysis_types: list[AnalysisType]
    first_received: str = Field(description="Month of the first receipt, YYYY-MM (Copenhagen).")
    last_received: str = Field(description="Month of the last receipt, YYYY-MM (Copenhagen).")
    samples: list[str] | None = Field(
        default=None, description="The sample pseudonyms: only of the asker's own region (or to NGC)."
    )


class DiscoveryAnswer(BaseModel):
    """Beacon v2 boolean and count, per region."""

    exists: bool
    count: int = Field(ge=0)
    regions: list[RegionHolding]


def answer(samples: Iterable[KnownSample], asker: Region | None) -> DiscoveryAnswer:
    """The answer for ``asker`` (None: NGC) about one patient's samples.

    Samples that failed QC are left out: they cannot be handed out as a working copy.
    """
    by_region: dict[Region, list[KnownSample]] = {}
    for sample in samples:
        if sample.accepted:
            by_region.setdefault(sample.region, []).append(sample)
    holdings = []
    for region in sorted(by_region):
        held = by_region[region]
        months = sorted(month_of(s.received_at) for s in held)
        holdings.append(
            RegionHolding(
                region=region,
                count=len(held),
                analysis_types=sorted({s.analysis_type for s in held}),
                first_received=months[0],
                last_received=months[-1],
                samples=sorted(s.sample_id for s in held) if asker in (None, region) else None,
            )
        )
    total = sum(h.count for h in holdings)
    return DiscoveryAnswer(exists=total > 0, count=total, regions=holdings)


def summary(answer: DiscoveryAnswer) -> dict[str, object]:
    """What the ledger keeps of an answer: exactly what was said, never more."""
    return answer.model_dump(mode="json", exclude_none=True)
