"""Nordjylland's spoke service with the hub's publisher and MirrorMaker 2 between their
brokers, all real processes: the spoke serves what its feed says at a verified revision and
acknowledges it to the hub, which shows its lag; killed, it comes back on its last revision
and goes on; a record forged on its own broker is refused and shows nowhere."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import threading
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.publisher.writer import FeedWriter
from shared.auth import token_hash
from shared.bus import publish
from shared.events import Region, SpokeRevisionApplied
from shared.kafka import credentials_dir, read_credentials
from shared.topics import dlq_name, feed_topic, spoke_principal, topic_name
from tests.integration.spoke.feeds import PARTITIONS, Link, produce, summaries
from tests.support import Process, free_port, genomhub, get_json, records, wait_for
from tests.unit.spoke.test_spoke_projection import indexed

SPOKE = Region.NORDJYLLAND
"""The region whose spoke this module stands up (the ``link`` fixture mirrors its feed alone)."""
SPOKE_TOKENS = {
    "nj-clinician": {"holder": "nordjylland", "roles": ["clinician"]},
    "ngc-operator": {"holder": "ngc", "roles": ["operator"]},
    "rh-clinician": {"holder": "hovedstaden", "roles": ["clinician"]},
}


def test_a_spoke_shows_verified_revisions_comes_back_on_its_last_and_refuses_a_forgery(
    link: Link, tmp_path: Path
) -> None:
    region, run = SPOKE, uuid.uuid4().hex[:8]
    tokens = json.dumps({token_hash(t): e for t, e in SPOKE_TOKENS.items()})
    publisher_port, spoke_port = free_port(), free_port()
    publisher = Process(
        genomhub("run", "publisher"),
        tmp_path / "publisher.log",
        {
            "GENOMHUB_PUBLISHER_DATABASE_URL": f"sqlite:///{tmp_path / 'publisher.sqlite'}",
            "GENOMHUB_PUBLISHER_PORT": str(publisher_port),
            "GENOMHUB_PUBLISHER_CHECKPOINT_INTERVAL": "0.3",
            "GENOMHUB_TOKENS": tokens,
        },
    ).start()
    on_the_hub = read_credentials(credentials_dir(Path(os.environ["GENOMHUB_HOME"])), spoke_principal(SPOKE))
    assert on_the_hub is not None
    spoke_env = {
        "GENOMHUB_HOME": str(link.home),
        "GENOMHUB_KAFKA_BOOTSTRAP": link.spoke.bootstrap,
        "GENOMHUB_SPOKE_REGION": region.value,
        "GENOMHUB_SPOKE_DATABASE_URL": f"sqlite:///{tmp_path / 'spoke.sqlite'}",
        "GENOMHUB_SPOKE_PORT": str(spoke_port),
        "GENOMHUB_SPOKE_HUB_KAFKA_BOOTSTRAP": link.hub.bootstrap,
        "GENOMHUB_SPOKE_HUB_KAFKA_USERNAME": on_the_hub.username,
        "GENOMHUB_SPOKE_HUB_KAFKA_PASSWORD": on_the_hub.password,
        "GENOMHUB_TOKENS": tokens,
    }
    spoke = Process(genomhub("run", "spoke"), tmp_path / "spoke.log", spoke_env).start()
    try:
        publisher.wait_http(publisher_port, "/readyz", timeout=90)
        spoke.wait_http(spoke_port, "/readyz", timeout=90)
        own, others = f"NJ-{run}", [f"RH-{run}-{i}" for i in range(2)]
        events = [(indexed(own, region=region), f"{run}-own")]
        events += [(indexed(o, region=Region.HOVEDSTADEN), f"{run}-{o}") for o in others]
        asyncio.run(publish(events, "/genomhub/test-indexer", principal="indexer"))

        # The session's other samples are on the spoke too: this run's are searched for.
        this_run = f"http://127.0.0.1:{spoke_port}/v1/samples?q={run}&limit=500"

        def showing(*names: str) -> Any:
            """The spoke's answer once it shows ``names``."""
            status, body = get_json(this_run, "nj-clinician")
            shown = {s["sample_id"] for s in body.get("samples", [])} if status == 200 else set()
            return body if set(names) <= shown else None

        first = wait_for(
            lambda: showing(own, *others), timeout=90, what="the spoke to show a verified revision"
        )
        kinds = {(s["region"], s["sample_id"]): s["kind"] for s in first["samples"] if run in s["sample_id"]}
        assert kinds == {("nordjylland", own): "record", **{("hovedstaden", o): "summary" for o in others}}
        assert "department" not in next(s for s in first["samples"] if s["kind"] == "summary")
        assert get_json(f"http://127.0.0.1:{spoke_port}/v1/samples", "rh-clinician")[0] == 403

        def acknowledged() -> Any:
            status, body = get_json(f"http://127.0.0.1:{publisher_port}/v1/spokes", "ngc-operator")
            if status != 200:
                return None
            (row,) = [r for r in body["spokes"] if r["region"] == region.value]
            return row if row["shown_revision"] == first["revision"]["revision"] else None

        row = wait_for(acknowledged, timeout=60, what="the hub to show the spoke's revision")
        assert row["entries_behind"] == 0 and row["published_revision"] >= row["shown_revision"]

        # Killed; a sample indexed meanwhile; back on its last revision, then the next one.
        spoke.stop(signal.SIGKILL)
        later = f"NJ-{run}-later"
        asyncio.run(
            publish(
                [(indexed(later, region=region), f"{run}-later")],
                "/genomhub/test-indexer",
                principal="indexer",
            )
        )
        spoke = Process(genomhub("run", "spoke"), tmp_path / "spoke-again.log", spoke_env).start()
        spoke.wait_http(spoke_port, "/readyz", timeout=90)
        status, again = get_json(f"http://127.0.0.1:{spoke_port}/v1/revision", "nj-clinician")
        assert status == 200 and again["revision"] >= first["revision"]["revision"]
        after = wait_for(
            lambda: showing(later), timeout=90, what="the restarted spoke to show the next revision"
        )
        assert after["revision"]["revision"] > first["revision"]["revision"]

        # The link to the hub cut while everything runs: the hub goes on publishing, the spoke
        # goes on showing its last whole revision; restored, it catches up, each sample once,
        # and what it shows only ever moves forward.
        seen: list[int] = []
        watching = threading.Event()

        def watch() -> None:
            while not watching.is_set():
                status, shown = get_json(f"http://127.0.0.1:{spoke_port}/v1/revision", "nj-clinician")
                if status == 200:
                    seen.append(shown["revision"])
                time.sleep(0.1)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        link.mirror.stop()
        cut_at = after["revision"]["revision"]
        while_cut = [f"NJ-{run}-cut-{i}" for i in range(5)]
        asyncio.run(
            publish(
                [(indexed(name, region=region), f"{run}-{name}") for name in while_cut],
                "/genomhub/test-indexer",
                principal="indexer",
            )
        )

        def hub_ahead() -> Any:
            status, body = get_json(f"http://127.0.0.1:{publisher_port}/v1/spokes", "ngc-operator")
            rows = [r for r in body["spokes"] if r["region"] == region.value] if status == 200 else []
            return rows[0] if rows and rows[0]["published_revision"] > cut_at else None

        wait_for(hub_ahead, timeout=60, what="the hub to publish past the spoke while the link is cut")
        time.sleep(3)  # what a cut link gives the spoke: nothing new
        status, during = get_json(f"http://127.0.0.1:{spoke_port}/v1/revision", "nj-clinician")
        assert status == 200 and during["revision"] == cut_at
        link.mirror.start(link.hub, link.spoke)
        caught_up = wait_for(
            lambda: showing(*while_cut), timeout=120, what="the spoke to catch up once the link is back"
        )
        watching.set()
        watcher.join(timeout=10)
        keys = [(s["region"], s["sample_id"]) for s in caught_up["samples"]]
        assert len(keys) == len(set(keys))  # nothing doubled
        assert seen == sorted(seen) and seen[-1] > cut_at, seen  # never back, and on past the cut
        after = caught_up

        # A record forged on the spoke's own broker, signed by a key the spoke does not pin.
        # Numbered past the feed's entries, so that only its signature gives it away.
        forger = FeedWriter(region, Ed25519PrivateKey.generate(), PARTITIONS, seq=10**6)
        forged = forger.publish(summaries([f"FORGED-{run}"], datetime.now(UTC))[0], datetime.now(UTC))
        assert forged is not None
        asyncio.run(produce(link.spoke, feed_topic(region), [forged, forger.checkpoint(datetime.now(UTC))]))

        def refused() -> float | None:
            with urllib.request.urlopen(f"http://127.0.0.1:{spoke_port}/metrics", timeout=10) as response:
                text = response.read().decode()
            found = re.search(r'genomhub_spoke_refused_total\{reason="unknown_key"\} (\d+\.\d+)', text)
            return float(found.group(1)) if found and float(found.group(1)) >= 2 else None

        wait_for(refused, timeout=60, what="the spoke to refuse the forged records")
        status, now = get_json(this_run, "nj-clinician")
        assert status == 200 and own in {s["sample_id"] for s in now["samples"]}
        assert f"FORGED-{run}" not in {s["sample_id"] for s in now["samples"]}
        assert now["revision"]["revision"] >= after["revision"]["revision"]

        # A spoke's credentials claiming a revision the hub never published: dead-lettered,
        # and the hub's view of the spoke unchanged.
        claimed = SpokeRevisionApplied(
            region=region,
            revision=10**9,
            upto=10**9,
            state_hash="0" * 64,
            samples=1,
            applied_at=datetime.now(UTC),
        )
        asyncio.run(
            publish([(claimed, f"{run}-claimed")], "/genomhub/spoke", principal=spoke_principal(region))
        )
        dead = wait_for(
            lambda: [
                r
                for r in records(link.hub.bootstrap, dlq_name(topic_name(SpokeRevisionApplied)))
                if dict(r.headers).get("ce_id") == f"{run}-claimed".encode()
            ],
            timeout=60,
            what="the claimed revision to be dead-lettered",
        )
        assert dict(dead[0].headers)["genomhub_dlq_code"] == b"inconsistent_event"
        status, spokes = get_json(f"http://127.0.0.1:{publisher_port}/v1/spokes", "ngc-operator")
        (mine,) = [r for r in spokes["spokes"] if r["region"] == region.value]
        assert mine["shown_revision"] < 10**9
        # A region's token reads its own spoke's row, and no other region's lag.
        status, theirs = get_json(f"http://127.0.0.1:{publisher_port}/v1/spokes", "rh-clinician")
        assert status == 200 and [r["region"] for r in theirs["spokes"]] == ["hovedstaden"]
    finally:
        spoke.stop()
        publisher.stop()
