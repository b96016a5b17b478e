"""The archive service as a real process on the real broker: it learns a received body,
cools it to the (folder) cold tier at once under a zero-day lifecycle and says so with
tier-moved; an operator's recall goes SUBMITTED -> COMPLETED and ends in file-staged, and so
does a recall another service asks for with recall-requested, each step told in recall-updated."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import subprocess
import time
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


def archive_env(tmp_path: Path, port: int, *, round_interval: float, recall_delay: float) -> dict[str, str]:
    """An archive service on ``tmp_path``'s tiers (the store is hot) that sends every raw body
    straight to the folder cold tier."""
    return {
        "GENOMHUB_ARCHIVE_PORT": str(port),
        "GENOMHUB_ARCHIVE_DATABASE_URL": f"sqlite:///{tmp_path / 'archive.sqlite'}",
        "GENOMHUB_ARCHIVE_ROUND_INTERVAL": str(round_interval),
        "GENOMHUB_STORE": (tmp_path / "store").as_uri(),
        "GENOMHUB_TIER_WARM": (tmp_path / "warm").as_uri(),
        "GENOMHUB_TIER_COLD": (tmp_path / "cold").as_uri(),
        "GENOMHUB_TIER_LIFECYCLE": json.dumps({"raw": [0, 0]}),
        "GENOMHUB_TIER_RECALL_DELAY": str(recall_delay),
    }


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
    env = archive_env(tmp_path, port, round_interval=0.5, recall_delay=1)
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


def ce_ids(bootstrap: str, model: type[Any], paths: set[str]) -> dict[str, set[str]]:
    """Per path, the event ids ``model``'s topic holds for it (a resend repeats an id)."""
    found: dict[str, set[str]] = {}
    for r in records(bootstrap, topic_name(model)):
        path = json.loads(r.value).get("path")
        if path in paths:
            found.setdefault(path, set()).add(dict(r.headers)["ce_id"].decode())
    return found


def announced_once(bootstrap: str, model: type[Any], paths: set[str]) -> None:
    """Wait for ``model``'s event for every path, then hold each path to one event id."""
    told = wait_for(
        lambda: found if len(found := ce_ids(bootstrap, model, paths)) == len(paths) else None,
        timeout=120,
        what=f"{model.__name__} for every body",
    )
    assert all(len(ids) == 1 for ids in told.values()), told


def test_an_archive_killed_mid_move_and_mid_recall_loses_nothing_and_recalls_nothing_twice(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """SIGKILL twice: while bodies cool to tape, then while a recall of all of them stages.
    Afterwards every body is on the cold tier alone (no partial copy anywhere), each move and
    each staging was announced under one event id, and each file was recalled once."""
    run_id = uuid.uuid4().hex[:8]
    store = tmp_path / "store"
    sample = f"AR-{run_id}"
    bodies = {
        f"hovedstaden/{sample}/{run_id}/part{i:02d}.fastq.gz": bytes([i]) * (1 << 20) for i in range(24)
    }
    files = []
    for path, body in bodies.items():
        (store / path).parent.mkdir(parents=True, exist_ok=True)
        (store / path).write_bytes(body)
        files.append(
            {
                "name": path.rsplit("/", 1)[1],
                "role": "raw_reads",
                "url": (store / path).as_uri(),
                "size": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
                "md5": hashlib.md5(body).hexdigest(),
            }
        )
    received = FileReceived(
        submission=Submission(
            submission_id=issued_id(f"archive-kill-{run_id}"),
            region="hovedstaden",
            department="Rigshospitalet",
            sample_id=sample,
            patient_id=f"NP-{run_id}",
            analysis_type="WGS",
            platform="ILLUMINA",
            received_at=datetime(2026, 2, 3, 10, tzinfo=UTC),
        ),
        files=files,
    )
    port = free_port()
    env = {
        **archive_env(tmp_path, port, round_interval=0.2, recall_delay=0.5),
        "GENOMHUB_TIER_DRIVES": "2",
        "GENOMHUB_ARCHIVE_LEASE_SECONDS": "3",  # a killed replica's rounds are taken over soon
    }
    paths = set(bodies)

    def started() -> Process:
        service = Process(genomhub("run", "archive"), tmp_path / "archive.log", env).start()
        service.wait_http(port, "/readyz", timeout=90)
        return service

    service = started()
    try:
        asyncio.run(
            publish([(received, f"{run_id}-received")], "/genomhub/test-receiver", principal="receiver")
        )
        deadline = time.monotonic() + 60
        while not any((tmp_path / "cold" / p).exists() for p in paths):  # the first move under way
            assert time.monotonic() < deadline, "no body reached the cold tier"
            time.sleep(0.005)
        service.stop(signal.SIGKILL)
        assert any((store / p).exists() for p in paths), "every move was done before the kill: kill sooner"
        service = started()
        announced_once(kafka_bootstrap, TierMoved, paths)
        for path, body in bodies.items():
            assert not (store / path).exists() and not (tmp_path / "warm" / path).exists()
            assert (tmp_path / "cold" / path).read_bytes() == body
        left = [p for p in tmp_path.rglob("*.part-*")]
        assert not left, left

        cli = {**env, "GENOMHUB_KAFKA_BOOTSTRAP": kafka_bootstrap}
        asked = subprocess.run(
            genomhub("archive", "recall", f"hovedstaden/{sample}"), env=cli, capture_output=True, text=True
        )
        assert asked.returncode == 0, asked.stderr
        recall_id = asked.stdout.split()[1].rstrip(":")
        wait_for(
            lambda: ce_ids(kafka_bootstrap, FileStaged, paths) or None,
            timeout=60,
            what="the first file-staged",
        )
        service.stop(signal.SIGKILL)
        assert len(ce_ids(kafka_bootstrap, FileStaged, paths)) < len(paths), "all staged before the kill"
        service = started()
        announced_once(kafka_bootstrap, FileStaged, paths)
        shown = subprocess.run(
            genomhub("archive", "status", "--recall", recall_id), env=cli, capture_output=True, text=True
        )
        assert f"recall {recall_id}: COMPLETED ({len(paths)}/{len(paths)} files final)" in shown.stdout, (
            shown.stdout + shown.stderr
        )
        assert shown.stdout.count("attempts=1") == len(paths), shown.stdout  # none recalled twice
    finally:
        service.stop()
