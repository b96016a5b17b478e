"""Indexed events as billing receives them, for the billing tests."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from shared.events import AnalysisType, Indexed, Region, SampleStatus, Submission
from tests.ids import issued_id


def indexed(
    sample_id: str,
    *,
    region: Region = Region.HOVEDSTADEN,
    department: str = "Rigshospitalet",
    analysis_type: AnalysisType = AnalysisType.WGS,
    received_at: datetime | None = None,
    ge: str | Decimal = "1",
    accepted: bool = True,
    status: SampleStatus = SampleStatus.HARMONISED,
    submission_id: str | None = None,
) -> Indexed:
    return Indexed(
        submission=Submission(
            submission_id=issued_id(submission_id or f"sub-{sample_id}"),
            region=region,
            department=department,
            sample_id=sample_id,
            patient_id=f"P-{sample_id}",
            analysis_type=analysis_type,
            platform="ILLUMINA",
            received_at=received_at or datetime(2026, 1, 15, 12, tzinfo=UTC),
        ),
        status=status if accepted else SampleStatus.REJECTED,
        accepted=accepted,
        genome_equivalents=Decimal(ge),
        files=3,
    )
