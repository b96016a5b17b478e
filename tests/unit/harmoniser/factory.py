"""Validated events built by hand from real files, as the validator would emit them."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from shared.events import CheckedFile, FileRole, HarmonisationDecision, HarmonisationPolicy, Validated
from tests.ids import issued_id


def checked(path: Path, role: FileRole, detected_type: str, conforms: bool | None = None) -> CheckedFile:
    data = path.read_bytes()
    return CheckedFile(
        name=path.name,
        role=role,
        url=path.resolve().as_uri(),
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        md5=hashlib.md5(data, usedforsecurity=False).hexdigest(),
        detected_type=detected_type,
        conforms=conforms,
        accepted=True,
    )


def validated(
    submission_id: str,
    sample: str,
    files: list[CheckedFile],
    policy: HarmonisationPolicy,
    *,
    needs_harmonisation: bool,
    passthrough: list[str] | None = None,
    accepted: bool = True,
) -> Validated:
    raw = [f.name for f in files if f.role == FileRole.RAW_READS]
    return Validated.model_validate(
        {
            "submission": {
                # a label becomes an id of the receiver's shape; an issued id stays as it is
                "submission_id": submission_id
                if re.fullmatch("[0-9a-f]{32}", submission_id)
                else issued_id(submission_id),
                "region": "midtjylland",
                "department": "Aarhus UH MOMA",
                "sample_id": sample,
                "patient_id": f"P-{sample}",
                "analysis_type": "WGS",
                "platform": "ILLUMINA",
                "received_at": datetime(2026, 2, 17, 9, 30, tzinfo=UTC),
            },
            "verdict": "accepted" if accepted else "rejected",
            "files": [f.model_dump() for f in files],
            "reference_profile": "synthetic-v1",
            "genome_equivalents": Decimal("0.001"),
            "raw_bases": 3_000_000,
            "raw_reads": 20_000,
            "harmonisation": HarmonisationDecision(
                policy=policy,
                needs_harmonisation=needs_harmonisation,
                pipeline_inputs=raw if needs_harmonisation else [],
                passthrough=passthrough or [],
                reasons=[f"policy {policy.value}"],
            ).model_dump(),
        }
    )
