"""What an indexed event means for billing: one sample's genome equivalents, or nothing.

A sample counts once, whatever files or outputs it has and however often its events are
delivered: the accrual is keyed by the sample, (region, sample pseudonym), and the store
upserts it; two regions' samples of one pseudonym are two samples. Only samples that
passed QC (``accepted``) count. An event that says a sample was accepted and rejected at the
same time is refused (so dead-lettered) rather than guessed at.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from shared.events import AnalysisType, Indexed, Region, SampleStatus, ge_to_micro


class InconsistentEvent(ValueError):
    """An indexed event whose fields contradict each other."""


@dataclass(frozen=True)
class Accrual:
    """One accepted sample as billing counts it."""

    sample_id: str
    submission_id: str
    region: Region
    department: str
    analysis_type: AnalysisType
    received_at: datetime
    received_month: str
    ge_micro: int
    event_id: str
    trace_parent: str | None = None
    """The W3C traceparent of billing's handling of the event, in the submission's trace:
    the month close that pays the accrual links to it, so a refund leads back to the
    submissions. None for accruals from before it was kept."""


class Outcome(StrEnum):
    ACCRUED = "accrued"
    """First time billing counts this sample."""
    UPDATED = "updated"
    """The sample's open-month accrual changed (a later event about it said otherwise)."""
    UNCHANGED = "unchanged"
    """A redelivery or replay: the accrual is already exactly this."""
    FROZEN = "frozen"
    """The sample is on a closed statement, which never changes."""
    NOT_ACCEPTED = "not_accepted"
    """The sample did not pass QC and does not count."""


def accrual_of(event: Indexed, event_id: str, trace_parent: str | None = None) -> Accrual | None:
    """The accrual an indexed event asks for; None when the sample does not count."""
    if event.accepted and event.status is SampleStatus.REJECTED:
        raise InconsistentEvent(
            f"sample {event.submission.sample_id}: accepted=true contradicts status={event.status.value}"
        )
    if not event.accepted:
        return None
    sub = event.submission
    return Accrual(
        sample_id=sub.sample_id,
        submission_id=sub.submission_id,
        region=sub.region,
        department=sub.department,
        analysis_type=sub.analysis_type,
        received_at=sub.received_at,
        received_month=sub.received_month,
        ge_micro=ge_to_micro(event.genome_equivalents),
        event_id=event_id,
        trace_parent=trace_parent,
    )
