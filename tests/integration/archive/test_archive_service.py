"""The archive service as a real process on the real broker: it learns a received body,
cools it to the (folder) cold tier at once under a zero-day lifecycle and says so with
tier-moved; an operator's recall goes SUBMITTED -> COMPLETED and ends in file-staged, and so
does a recall another service asks for with recall-requested, each step told in recall-updated."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.bus import publish
from shared.events import FileReceived, FileStaged, RecallRequested, RecallUpdated, Submission, TierMoved
from shared.topics import topic_name
from tests.ids import issued_id
from tests.support import Process, free_port, genomhub, records, wait_for


def of_path(bootstrap: str, model: type[Any], path: str) -> list[dict[str, Any]]:
    found = [json.loads(r.value) for r in records(bootstrap, topic_name(model))]
    return [f for f in found if f["path"] == path]


def test_a_body_cools_to_tape_and_an_operators_recall_stages_it(kafka_bootstrap: str, tmp_path: Path) -> None:
    run_id = uuid.uuid4().hex[:8]
    store = tmp_path / "store"
    path = f"hovedstaden/AR-{run_id}/{run_id}/R1.fastq.gz"
    body = bytes(range(256)) * 4096
    (store / path).parent.mkdir(parents=True)
    (store / path).write_bytes(body)
    submission = Submission(
        submission_id=issued_id(f"archive-{run_id}"),
        region="hovedstaden",
        department="Rigshospitalet",
        sample_id=f"AR-{run_id}",
        patient_id=f"NP-{run_id}",
        analysis_type="WGS",
        platform="ILLUMINA",
        received_at=datetime(2026, 2, 3, 10, tzinfo=UTC),
    )
    received = FileReceived(
        submission=submission,
        files=[
            {
                "name": "R1.fastq.gz",
                "role": "raw_reads",
                "url": (store / path).as_uri(),
                "size": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
                "md5": hashlib.md5(body).hexdigest(),
            }
        ],
    )
    port = free_port()
    env = {
        "GENOMHUB_ARCHIVE_PORT": str(port),
        "GENOMHUB_ARCHIVE_DATABASE_URL": f"sqlite:///{tmp_path / 'archive.sqlite'}",
        "GENOMHUB_ARCHIVE_ROUND_INTERVAL": "0.5",
        "GENOMHUB_STORE": store.as_uri(),
        "GENOMHUB_TIER_WARM": (tmp_path / "warm").as_uri(),
        "GENOMHUB_TIER_COLD": (tmp_path / "cold").as_uri(),
        "GENOMHUB_TIER_LIFECYCLE": json.dumps({"raw": [0, 0]}),
        "GENOMHUB_TIER_RECALL_DELAY": "1",
    }
    service = Process(genomhub("run", "archive"), tmp_path / "archive.log", env).start()
    try:
        service.wait_http(port, "/readyz", timeout=90)
        asyncio.run(
            publish([(received, f"{run_id}-received")], "/genomhub/test-receiver", principal="receiver")
        )
        [moved] = wait_for(
            lambda: of_path(kafka_bootstrap, TierMoved, path), timeout=60, what="tier-moved for the body"
        )
        assert (moved["source"], moved["target"]) == ("hot", "cold")
        assert moved["sha256"] == hashlib.sha256(body).hexdigest()  # a plain body here: its bytes as stored
        assert not (store / path).exists() and (tmp_path / "cold" / path).read_bytes() == body

        cli = {**env, "GENOMHUB_KAFKA_BOOTSTRAP": kafka_bootstrap}
        asked = subprocess.run(
            genomhub("archive", "recall", f"hovedstaden/AR-{run_id}"), env=cli, capture_output=True, text=True
        )
        assert asked.returncode == 0, asked.stderr
        recall_id = asked.stdout.split()[1].rstrip(":")
        [staged] = wait_for(
            lambda: of_path(kafka_bootstrap, FileStaged, path), timeout=60, what="file-staged for the body"
        )
        assert (staged["recall_id"], staged["tier"]) == (recall_id, "cold")
        shown = subprocess.run(
            genomhub("archive", "status", "--recall", recall_id), env=cli, capture_output=True, text=True
        )
        assert f"recall {recall_id}: COMPLETED (1/1 files final)" in shown.stdout, shown.stderr
        assert f"COMPLETED {path}  attempts=1" in shown.stdout

        wanted = RecallRequested(
            recall_id=uuid.uuid4().hex,
            region="hovedstaden",
            sample_id=f"AR-{run_id}",
            paths=[path],
            requested_by="access: a working copy",
            requested_at=datetime.now(UTC),
        )
        asyncio.run(publish([(wanted, f"{run_id}-recall")], "/genomhub/test-access", principal="access"))
        wait_for(
            lambda: [
                s for s in of_path(kafka_bootstrap, FileStaged, path) if s["recall_id"] == wanted.recall_id
            ],
            timeout=60,
            what="file-staged for the requested recall",
        )
        told = of_path(kafka_bootstrap, RecallUpdated, path)
        for recall in (recall_id, wanted.recall_id):
            states = [t for t in told if t["recall_id"] == recall]
            assert states[-1]["state"] == "COMPLETED" and states[-1]["expected_at"] is None
            assert all(t["expected_at"] for t in states if t["state"] in ("SUBMITTED", "STARTED"))
    finally:
        service.stop()
