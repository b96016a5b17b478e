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
from shared.config import TopicSettings
from shared.events import (
    AccessDecided,
    AccessRequested,
    AccessRevoked,
    Region,
    Requester,
    SampleRef,
    sample_key,
)
from shared.feed import SampleRecord, SampleSummary, write_hub_key_pair
from shared.topics import ADMIN, spoke_feeds
from tests.ids import issued_id
from tests.integration.spoke.feeds import recreate
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


def test_a_rolled_over_key_is_announced_before_it_signs_and_a_wrong_key_stops_the_publisher(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The publisher restarted with a new hub key and, as the previous one, the key that signs
    the feeds: a spoke that pins the old key follows on, through the signed announcements,
    with nothing refused. Restarted with a key that signs nothing of the feeds, and no
    previous one, it stops and says why."""
    run = uuid.uuid4().hex[:8]
    env = {
        "GENOMHUB_PUBLISHER_DATABASE_URL": f"sqlite:///{tmp_path / 'publisher.sqlite'}",
        "GENOMHUB_PUBLISHER_CHECKPOINT_INTERVAL": "0.3",
    }
    spoke = FeedReading(kafka(ADMIN), SPOKE, Path(os.environ["GENOMHUB_HUB_PUBLIC_KEY"]))

    def index(sample: str) -> None:
        asyncio.run(
            publish(
                [(indexed(sample, region=SPOKE), f"{run}-{sample}")],
                "/genomhub/test-indexer",
                principal="indexer",
            )
        )

    def running(extra: dict[str, str], log: str) -> Process:
        port = free_port()
        started = Process(
            genomhub("run", "publisher"),
            tmp_path / log,
            {**env, **extra, "GENOMHUB_PUBLISHER_PORT": str(port)},
        ).start()
        started.wait_http(port, "/readyz", timeout=90)
        return started

    before = f"OUH-{run}-before"
    index(before)
    old = running({}, "publisher-old.log")
    try:
        spoke.sees(lambda r: sample_key(SPOKE, before) in r.samples)
    finally:
        old.stop()

    new_keys = tmp_path / "new-hub-key"
    write_hub_key_pair(new_keys, os.environ["GENOMHUB_HUB_KEY_PASSPHRASE"])
    rolled = {
        "GENOMHUB_HUB_SECRET_KEY": str(new_keys / "hub.sec"),
        "GENOMHUB_HUB_PUBLIC_KEY": str(new_keys / "hub.pub"),
        "GENOMHUB_HUB_PREVIOUS_SECRET_KEY": os.environ["GENOMHUB_HUB_SECRET_KEY"],
    }
    after = f"OUH-{run}-after"
    new = running(rolled, "publisher-new.log")
    try:
        index(after)
        shown = spoke.sees(lambda r: sample_key(SPOKE, after) in r.samples)
        assert spoke.refused == [], [str(r) for r in spoke.refused]
        assert shown.samples[sample_key(SPOKE, after)].body.sample_id == after
    finally:
        new.stop()

    # The feeds are the new key's now: the old one alone may not go on writing them.
    wrong = Process(
        genomhub("run", "publisher"),
        tmp_path / "publisher-wrong.log",
        {**env, "GENOMHUB_PUBLISHER_PORT": str(free_port())},
    ).start()
    assert wrong.wait_exit(timeout=90) != 0
    assert "not by this key" in wrong.tail(200)
    # The feeds empty again, as registered, for the session's key to write after this test.
    asyncio.run(recreate(kafka(ADMIN), spoke_feeds(TopicSettings().partitions)))
