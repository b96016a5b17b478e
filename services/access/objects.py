"""The archive's files as DRS objects: which deliverable each file is, its opaque id, and the
GA4GH DRS 1.4 object metadata a caller sees (checksums and size; never where it is stored).

The facts come from the harmoniser's ``harmonised`` events, which carry every input file as
QC saw it and every output, each with its size and the sha256 of its plaintext (the region's
checksum, design.md section 13). An object's id is derived from its sample and name, so a
replay of the events gives every file the id it had.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, Field

from shared.events import Deliverable, FileRole, Harmonised, Region, sample_key
from shared.identifiers import minted_free_of_cpr

OBJECT_NAMESPACE = uuid.UUID("5f0b8a4e-2b5c-4f0e-9a53-6d1c0e7f4a11")
"""The namespace of DRS object ids (uuid5 of the sample's key and the file's name)."""

OUTPUT_DELIVERABLES = {
    "cram": Deliverable.HARMONISED_CRAM,
    "crai": Deliverable.HARMONISED_CRAM,
    "vcf": Deliverable.HARMONISED_VCF,
    "tbi": Deliverable.HARMONISED_VCF,
    "clinical_output": Deliverable.CLINICAL_OUTPUT,
}
"""What a harmonised output of each kind is, as a request names it (an index goes with its file)."""
ROLE_DELIVERABLES = {
    FileRole.RAW_READS: Deliverable.RAW_READS,
    FileRole.CLINICAL_OUTPUT: Deliverable.CLINICAL_OUTPUT,
}


@dataclass(frozen=True)
class ArchivedObject:
    """One file that may go out as a working copy; ``url`` is the archive's, never shown."""

    object_id: str
    region: Region
    sample_id: str
    name: str
    deliverable: Deliverable
    size: int
    sha256: str
    url: str
    created_at: datetime


def object_id(region: Region, sample_id: str, name: str) -> str:
    key = f"{sample_key(region, sample_id)}/{name}"
    return minted_free_of_cpr(lambda n: uuid.uuid5(OBJECT_NAMESPACE, f"{key}|{n}" if n else key).hex)


def objects_of(event: Harmonised) -> list[ArchivedObject]:
    """The files of a successful harmonisation that a request can name, one per name."""
    if event.status != "succeeded":
        return []
    sub = event.submission
    found: dict[str, ArchivedObject] = {}
    listed = [(f.name, ROLE_DELIVERABLES[f.role], f.size, f.sha256, f.url) for f in event.files if f.accepted]
    listed += [
        (o.name, OUTPUT_DELIVERABLES[o.kind], o.size, o.sha256, o.url)
        for o in event.outputs
        if o.kind in OUTPUT_DELIVERABLES
    ]
    for name, deliverable, size, sha256, url in listed:
        oid = object_id(sub.region, sub.sample_id, name)
        found[oid] = ArchivedObject(
            oid, sub.region, sub.sample_id, name, deliverable, size, sha256, url, sub.received_at
        )
    return sorted(found.values(), key=lambda o: o.name)


class Checksum(BaseModel):
    checksum: str
    type: str = Field(description="The IANA-style name DRS uses: `sha-256`.")


class AccessMethod(BaseModel):
    """How a grantee gets the bytes: ``/objects/{id}/access/{access_id}`` gives the URL."""

    type: str = Field(description="Always `https`.")
    access_id: str = Field(description="The grant the working copy is handed out under.")


class AccessUrl(BaseModel):
    """DRS's ``AccessURL``: a short-lived URL that is its own credential (no bearer token)."""

    url: str
    headers: list[str] = Field(default_factory=list)


class DrsObject(BaseModel):
    """A DRS 1.4 ``DrsObject`` of a single blob. ``access_methods`` are listed to a caller
    with a grant in force for it (one per such grant); anyone else learns what exists, not
    how to get it, and never where it is stored."""

    id: str
    name: str
    self_uri: str
    size: int
    created_time: datetime
    checksums: list[Checksum]
    description: str
    access_methods: list[AccessMethod] = Field(default_factory=list)


def drs_object(found: ArchivedObject, host: str, grants: list[str] | None = None) -> DrsObject:
    return DrsObject(
        id=found.object_id,
        name=found.name,
        self_uri=f"drs://{host}/{found.object_id}",
        size=found.size,
        created_time=found.created_at,
        checksums=[Checksum(checksum=found.sha256, type="sha-256")],
        description=f"{found.deliverable.value} of {sample_key(found.region, found.sample_id)}",
        access_methods=[AccessMethod(type="https", access_id=g) for g in grants or []],
    )
