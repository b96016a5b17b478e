"""Validated events built by hand from real files, as the validator would emit them."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from shared.encryption import load_archive_key, write_key_pair
from shared.events import CheckedFile, FileRole, HarmonisationDecision, HarmonisationPolicy, Validated
from shared.headers import HeaderStore
from shared.storage import ArchiveReader, seal
from tests.ids import issued_id
from tests.support import ARCHIVE_PASSPHRASE

PASSPHRASE = ARCHIVE_PASSPHRASE
"""The session's: a harmoniser test may share the session's home and its key."""


def archive_at(home: Path) -> ArchiveReader:
    """The archive of a genomhub home as the services default to it: ``store``, ``headers``
    and the key pair in ``keys`` (made on first use, locked with :data:`PASSPHRASE`)."""
    keys = home / "keys"
    if not (keys / "archive.sec").exists():
        write_key_pair(keys, PASSPHRASE)
    key = load_archive_key(keys / "archive.sec", keys / "archive.pub", PASSPHRASE)
    return ArchiveReader(HeaderStore((home / "store").as_uri(), (home / "headers").as_uri()), key)


def checked(
    path: Path, role: FileRole, detected_type: str, conforms: bool | None = None, *, archive: ArchiveReader
) -> CheckedFile:
    """``path`` archived as the receiver archives it (encrypted, its header apart), as checked."""
    data = path.read_bytes()
    url = f"{archive.headers.store}/midtjylland/{path.parent.name}/{path.name}"
    seal(url, [data], archive.headers, archive.key.public)
    return CheckedFile(
        name=path.name,
        role=role,
        url=url,
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
