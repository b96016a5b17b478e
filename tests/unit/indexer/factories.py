"""Events as the validator and harmoniser emit them, for the indexer's tests."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from services.indexer.catalogue import CatalogueEvent
from shared.events import Harmonised, Submission, Validated
from tests.ids import issued_id

T0 = datetime(2026, 1, 31, 23, 30, tzinfo=UTC)  # 1 February 00:30 in Copenhagen


def digest(text: str, size: int = 64) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:size]


def submission(
    n: int = 1,
    *,
    region: str = "hovedstaden",
    analysis: str = "WGS",
    sample: str | None = None,
    received_at: datetime = T0,
    department: str = "Rigshospitalet",
) -> Submission:
    return Submission(
        submission_id=issued_id(f"sub-{n:04d}"),
        region=region,
        department=department,
        sample_id=sample or f"S-{n:04d}",
        patient_id=f"P-{n:04d}",
        analysis_type=analysis,
        platform="ILLUMINA",
        received_at=received_at,
    )


def checked_file(
    sub: Submission, name: str, role: str = "raw_reads", accepted: bool = True
) -> dict[str, Any]:
    problems = [] if accepted else [{"code": "fastq.truncated", "message": "gzip stream ends early"}]
    return {
        "name": name,
        "role": role,
        "url": f"s3://user:secret@ngc-archive/{sub.region}/{sub.submission_id}/{name}?X-Amz-Signature=abc",
        "size": 1000,
        "sha256": digest(sub.submission_id + name),
        "md5": digest(name, 32),
        "detected_type": "fastq.gz" if role == "raw_reads" else "cram",
        "metrics": {"reads": 1000, "bases": 150000},
        "problems": problems,
        "accepted": accepted,
    }


def validated(sub: Submission, verdict: str = "rejected", ge: str = "0.001613") -> Validated:
    return Validated.model_validate(
        {
            "submission": sub.model_dump(),
            "verdict": verdict,
            "files": [
                checked_file(sub, "R1.fastq.gz", accepted=verdict == "accepted"),
                checked_file(sub, "R2.fastq.gz"),
            ],
            "reference_profile": "synthetic-v1",
            "genome_equivalents": Decimal(ge),
            "raw_bases": 150000,
            "raw_reads": 2000,
            "harmonisation": {"policy": "harmonise-and-store", "needs_harmonisation": verdict == "accepted"},
        }
    )


def harmonised(sub: Submission, status: str = "succeeded", ge: str = "0.001613") -> Harmonised:
    outputs = (
        [
            {
                "name": f"{sub.sample_id}.cram",
                "kind": "cram",
                "url": f"s3://ngc-archive/{sub.region}/{sub.submission_id}/sarek/{sub.sample_id}.cram",
                "size": 500,
                "sha256": digest("cram" + sub.submission_id),
                "provenance": "nf-core/sarek 3.5.1",
            },
            {
                "name": f"{sub.sample_id}.vcf.gz",
                "kind": "vcf",
                "url": f"s3://ngc-archive/{sub.region}/{sub.submission_id}/sarek/{sub.sample_id}.vcf.gz",
                "size": 100,
                "sha256": digest("vcf" + sub.submission_id),
                "provenance": "nf-core/sarek 3.5.1",
            },
        ]
        if status == "succeeded"
        else []
    )
    return Harmonised.model_validate(
        {
            "submission": sub.model_dump(),
            "status": status,
            "files": [checked_file(sub, "R1.fastq.gz"), checked_file(sub, "R2.fastq.gz")],
            "genome_equivalents": Decimal(ge),
            "raw_bases": 150000,
            "outputs": outputs,
            "provenance": {
                "pipeline": "nf-core/sarek",
                "pipeline_version": "3.5.1",
                "reference": "synthetic-v1",
                "duration_s": 12.5,
            },
            "attempts": 1,
        }
    )


def event(data: Validated | Harmonised, seconds: float = 0, eid: str | None = None) -> CatalogueEvent:
    """The event as the catalogue keeps it, ``seconds`` after T0, with a trace id of its own."""
    eid = eid or f"{data.event_name}-{data.submission.submission_id}-{seconds:g}"
    return CatalogueEvent(
        id=eid,
        time=T0 + timedelta(seconds=seconds),
        source=f"/genomhub/{'validator' if data.event_name == 'validated' else 'harmoniser'}",
        trace_id=digest(eid, 32),
        data=data,
    )
