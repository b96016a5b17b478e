"""The publisher as real processes on the real broker: two replicas, one writing every spoke's
feed under the lease, from the indexer's and the access service's events; what a spoke reads
of it verifies; the writer SIGKILLed, the other goes on with the numbering, and a restart
publishes nothing a spoke already has."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shared.bus import publish
from shared.events import (
    AccessDecided,
    AccessRequested,
    AccessRevoked,
    Region,
    Requester,
    SampleRef,
    sample_key,
)
from shared.feed import SampleRecord, SampleSummary
from shared.topics import ADMIN
from tests.ids import issued_id
from tests.support import FeedReading, Process, free_port, genomhub, kafka
from tests.unit.spoke.test_spoke_projection import indexed

SPOKE, OWNER = Region.SYDDANMARK, Region.HOVEDSTADEN


def test_one_replica_writes_the_feeds_and_the_other_goes_on_after_it_is_killed(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    own, other = f"OUH-{run}", f"RH-{run}"
    asyncio.run(
        publish(
            [(indexed(own, region=SPOKE), f"{run}-own"), (indexed(other, region=OWNER), f"{run}-other")],
            "/genomhub/test-indexer",
            principal="indexer",
        )
    )
    env = {
        "GENOMHUB_PUBLISHER_DATABASE_URL": f"sqlite:///{tmp_path / 'publisher.sqlite'}",
        "GENOMHUB_PUBLISHER_CHECKPOINT_INTERVAL": "0.5",
        "GENOMHUB_PUBLISHER_LEASE_SECONDS": "6",
    }
    replicas = []
    for name in ("a", "b"):
        port = free_port()
        replica = Process(
            genomhub("run", "publisher"),
            tmp_path / f"publisher-{name}.log",
            {**env, "GENOMHUB_PUBLISHER_PORT": str(port)},
        ).start()
        replica.wait_http(port, "/readyz", timeout=90)
        replicas.append(replica)
    spoke = FeedReading(
        kafka(ADMIN), SPOKE, Path(os.environ["GENOMHUB_HUB_PUBLIC_KEY"])
    )  # the session's (conftest)
    try:
        first = spoke.sees(lambda r: {sample_key(SPOKE, own), sample_key(OWNER, other)} <= set(r.samples))
        mine, theirs = (
            first.samples[sample_key(SPOKE, own)].body,
            first.samples[sample_key(OWNER, other)].body,
        )
        assert isinstance(mine, SampleRecord) and mine.seen_as == "own"
        assert isinstance(theirs, SampleSummary)

        # Odense asks for Rigshospitalet's sample and is granted it: the spoke sees it whole.
        request_id = issued_id(f"publisher-request-{run}")
        now = datetime.now(UTC)
        asked = AccessRequested(
            request_id=request_id,
            owner=OWNER,
            requester=Requester(region=SPOKE, department="OUH Klinisk Genetik"),
            samples=[SampleRef(region=OWNER, sample_id=other)],
            wants=["harmonised-cram"],
            purpose="patient-treatment",
            case_reference=f"OUH-{run}",
            urgency="routine",
            requested_at=now,
        )
        decided = AccessDecided(
            request_id=request_id,
            owner=OWNER,
            granted=True,
            decided_by=OWNER,
            decided_at=now,
            valid_until=now + timedelta(days=14),
        )
        asyncio.run(
            publish(
                [(asked, f"{run}-asked"), (decided, f"{run}-decided")],
                "/genomhub/test-access",
                principal="access",
            )
        )
        granted = spoke.sees(lambda r: isinstance(r.samples[sample_key(OWNER, other)].body, SampleRecord))
        body = granted.samples[sample_key(OWNER, other)].body
        assert isinstance(body, SampleRecord) and body.seen_as == "granted" and body.granted_until is not None

        # The writer is killed; the other replica takes the lease and goes on from the feed.
        writer = next(r for r in replicas if "holding the feeds' lease" in r.tail(400))
        writer.stop(signal.SIGKILL)
        revoked = AccessRevoked(
            request_id=request_id,
            owner=OWNER,
            revoked_by=OWNER,
            reason="case closed",
            revoked_at=datetime.now(UTC),
        )
        asyncio.run(publish([(revoked, f"{run}-revoked")], "/genomhub/test-access", principal="access"))
        later = spoke.sees(lambda r: isinstance(r.samples[sample_key(OWNER, other)].body, SampleSummary))
        assert later.revision > granted.revision > first.revision
        # The survivor read the whole log again, and published nothing the spoke had.
        assert later.samples[sample_key(SPOKE, own)].seq == first.samples[sample_key(SPOKE, own)].seq
        assert spoke.refused == [], [str(r) for r in spoke.refused]
        survivor = next(r for r in replicas if r is not writer)
        assert "holding the feeds' lease" in survivor.tail(400), survivor.tail()
    finally:
        for replica in replicas:
            replica.stop()
