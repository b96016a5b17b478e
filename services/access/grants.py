"""Who may decide, revoke and use an access request, and what a grant opens when: pure rules.

The minutes' rule is that the data owner (the region that reported the samples) decides who
else sees its data. So only the owner's data steward decides, NGC included in "anyone else";
the owner's steward may revoke its own grant, and NGC's operator may revoke any grant in an
emergency. A grant opens nothing after its end or its revocation: :func:`standing` is asked
at every use, with the moment of use, not only by a timer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from shared.auth import Principal, Role
from shared.events import AccessRequested, Deliverable, GenomicRange, Region


class Standing(StrEnum):
    """Where a request stands at a moment."""

    PENDING = "pending"
    GRANTED = "granted"
    DENIED = "denied"
    REVOKED = "revoked"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Decision:
    granted: bool
    decided_at: datetime
    valid_until: datetime | None


def standing(decision: Decision | None, revoked_at: datetime | None, at: datetime) -> Standing:
    """A request's standing at ``at``: a grant is in force only before its end and its revocation."""
    if decision is None:
        return Standing.PENDING
    if not decision.granted:
        return Standing.DENIED
    if revoked_at is not None and revoked_at <= at:
        return Standing.REVOKED
    if decision.valid_until is None or at >= decision.valid_until:
        return Standing.EXPIRED
    return Standing.GRANTED


def grant_end(decided_at: datetime, days: int) -> datetime:
    """When a grant decided at ``decided_at`` ends: ``days`` later to the microsecond."""
    if days <= 0:
        raise ValueError("a grant lasts at least one day")
    return decided_at + timedelta(days=days)


class NotAllowed(Exception):
    """The caller may not do this; the message says who may (it goes to the 403 and the ledger)."""


def check_decider(principal: Principal, owner: Region) -> None:
    """Only the owning region's data steward decides; NGC is anyone else here."""
    if principal.region != owner or not principal.has(Role.DATA_STEWARD):
        raise NotAllowed(f"only {owner.value}'s data steward decides on {owner.value}'s data")


def check_revoker(principal: Principal, owner: Region) -> None:
    """The owner's data steward revokes its own grants; NGC's operator any grant."""
    if principal.national and principal.has(Role.OPERATOR):
        return
    if principal.region == owner and principal.has(Role.DATA_STEWARD):
        return
    raise NotAllowed(f"only {owner.value}'s data steward or NGC's operator revokes this grant")


def check_key_registrar(principal: Principal, region: Region) -> None:
    """A department's key is registered by its region's data steward, or by NGC's operator."""
    if principal.national and principal.has(Role.OPERATOR):
        return
    if principal.region == region and principal.has(Role.DATA_STEWARD):
        return
    raise NotAllowed(f"only {region.value}'s data steward or NGC's operator registers {region.value}'s keys")


def may_read_request(principal: Principal, owner: Region, requester: Region) -> bool:
    """A request is read by the region that made it, the region that owns its data, and NGC."""
    return principal.national or principal.region in (owner, requester)


def opens(
    request: AccessRequested,
    now_standing: Standing,
    reader: Region,
    sample: tuple[Region, str],
    what: Deliverable,
) -> bool:
    """Whether a request, standing as it does now, lets ``reader`` have ``what`` of ``sample``:
    a grant in force, made by the reader's region, naming the sample and the deliverable."""
    region, sample_id = sample
    return (
        now_standing is Standing.GRANTED
        and request.requester.region == reader
        and request.owner == region
        and any(s.sample_id == sample_id for s in request.samples)
        and what in request.wants
    )


def covers(ranges: Sequence[GenomicRange], locus: GenomicRange | None) -> bool:
    """Whether a slice of ``locus`` lies within the genomic ``ranges`` a request asked for:
    anything, when it named none; else inside one of them (a slice without a range is the
    whole file, which a request for ranges does not cover)."""
    if not ranges:
        return True
    if locus is None:
        return False
    return any(
        granted.reference_name == locus.reference_name
        and (granted.start or 0) <= (locus.start or 0)
        and (granted.end is None or (locus.end is not None and locus.end <= granted.end))
        for granted in ranges
    )
