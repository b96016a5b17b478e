"""What each spoke may see of the national catalogue: the hub's projection, per sample and spoke.

A region sees its own samples whole (a record), and another region's whole only while a
grant to it is in force (a record with the grant's end); everything else only as discovery
needs it (a summary). The inputs are the catalogue's ``indexed`` events and the access
service's ``access-requested``, ``access-decided`` and ``access-revoked``; each returns the
bodies that may have changed, one per (spoke, sample), for :class:`~services.publisher.writer.FeedWriter`,
which sends only those that did change.

Records of different topics come in no agreed order (a replay, a lagging partition), so a
decision may arrive before its request, and a revocation before its decision: each is kept
until what it needs has come, and a revoked request is never granted afterwards. A grant's
end is a time, not an event: :meth:`Projection.expire` ends the grants whose time has come.

Pure: no Kafka, no clock of its own (``now`` is given).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from shared.events import (
    AccessDecided,
    AccessRequested,
    AccessRevoked,
    Indexed,
    Region,
    Verdict,
    month_of,
    sample_key,
)
from shared.feed import SampleBody, SampleRecord, SampleSummary, Withdrawal

Change = tuple[Region, SampleBody]
"""A body for one spoke's feed."""


@dataclass(frozen=True)
class Grant:
    request_id: str
    to: Region
    samples: frozenset[str]
    until: datetime


@dataclass
class Projection:
    indexed_samples: dict[str, Indexed] = field(default_factory=dict)
    grants: dict[str, Grant] = field(default_factory=dict)
    _requests: dict[str, AccessRequested] = field(default_factory=dict)
    _decisions: dict[str, AccessDecided] = field(default_factory=dict)
    _revoked: set[str] = field(default_factory=set)

    # -- what a spoke sees ------------------------------------------------------------------

    def granted_until(self, key: str, spoke: Region, now: datetime) -> datetime | None:
        ends = [g.until for g in self.grants.values() if g.to == spoke and key in g.samples and g.until > now]
        return max(ends, default=None)

    def view(self, key: str, spoke: Region, now: datetime) -> SampleBody | None:
        """The body ``spoke`` holds for ``key``; None for a sample the hub never indexed."""
        event = self.indexed_samples.get(key)
        if event is None:
            return None
        sub = event.submission
        common = {
            "region": sub.region,
            "sample_id": sub.sample_id,
            "analysis_type": sub.analysis_type,
            "qc": Verdict.ACCEPTED if event.accepted else Verdict.REJECTED,
            "status": event.status,
            "genome_equivalents": event.genome_equivalents,
            "files": event.files,
            "received_month": month_of(sub.received_at),
        }
        until = None if sub.region == spoke else self.granted_until(key, spoke, now)
        if sub.region != spoke and until is None:
            return SampleSummary(**common)
        return SampleRecord(
            **common,
            submission_id=sub.submission_id,
            department=sub.department,
            platform=sub.platform,
            received_at=sub.received_at,
            seen_as="own" if sub.region == spoke else "granted",
            granted_until=until,
        )

    def _views(self, pairs: Iterable[tuple[Region, str]], now: datetime) -> list[Change]:
        changes = []
        for spoke, key in sorted(set(pairs)):
            body = self.view(key, spoke, now)
            if body is not None:
                changes.append((spoke, body))
        return changes

    # -- the catalogue's events -------------------------------------------------------------

    def indexed(self, event: Indexed, now: datetime) -> list[Change]:
        """A sample indexed, or indexed again (a region's correction): every spoke's view of it."""
        key = event.key()
        self.indexed_samples[key] = event
        return self._views(((spoke, key) for spoke in Region), now)

    def withdrawn(self, region: Region, sample_id: str) -> list[Change]:
        """A sample gone from the catalogue: a signed withdrawal on every spoke's feed."""
        key = sample_key(region, sample_id)
        if self.indexed_samples.pop(key, None) is None:
            return []
        return [
            (spoke, Withdrawal(region=region, sample_id=sample_id, reason="withdrawn")) for spoke in Region
        ]

    # -- the access service's events --------------------------------------------------------

    def requested(self, event: AccessRequested, now: datetime) -> list[Change]:
        self._requests[event.request_id] = event
        decision = self._decisions.pop(event.request_id, None)
        return [] if decision is None else self.decided(decision, now)

    def decided(self, event: AccessDecided, now: datetime) -> list[Change]:
        """A grant shows the requester's spoke the request's samples whole, until it ends."""
        if not event.granted or event.request_id in self._revoked or event.valid_until is None:
            return []
        request = self._requests.get(event.request_id)
        if request is None:  # its request is on another topic, not read yet
            self._decisions[event.request_id] = event
            return []
        keys = frozenset(sample_key(s.region, s.sample_id) for s in request.samples)
        grant = Grant(event.request_id, request.requester.region, keys, event.valid_until)
        self.grants[event.request_id] = grant
        return self._views(((grant.to, key) for key in keys), now)

    def revoked(self, event: AccessRevoked, now: datetime) -> list[Change]:
        """Revoked: at once, the requester's spoke sees the samples as discovery only again."""
        self._revoked.add(event.request_id)
        self._decisions.pop(event.request_id, None)
        grant = self.grants.pop(event.request_id, None)
        return [] if grant is None else self._views(((grant.to, key) for key in grant.samples), now)

    def expire(self, now: datetime) -> list[Change]:
        """The grants that ended by ``now``, taken back as a revocation is."""
        ended = [g for g in self.grants.values() if g.until <= now]
        for grant in ended:
            del self.grants[grant.request_id]
        return self._views(((g.to, key) for g in ended for key in g.samples), now)
