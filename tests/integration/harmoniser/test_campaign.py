"""A reanalysis campaign through the real broker, a real archive and a real harmoniser process:
a sample harmonised at intake whose raw reads then went to tape is recalled, handed to the
harmoniser as its reads are staged, rerun with the campaign's Sarek release beside the
intake's outputs, and counted off; a replayed request runs nothing twice."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.bus import new_event_id, publish
from shared.events import (
    FileReceived,
    FileRole,
    HarmonisationPolicy,
    ReharmonisationRequested,
    TierMoved,
)
from shared.headers import HeaderStore
from shared.storage import ArchiveReader
from shared.synthetic import simulate_paired_reads
from shared.topics import topic_name
from tests.integration.harmoniser.conftest import harmonised, send, start_harmoniser
from tests.support import Process, free_port, genomhub, records, wait_for
from tests.unit.harmoniser.factory import checked, validated
from tools.stack.environment import StackSettings


def reruns_asked(bootstrap: str, submission_id: str) -> list[dict[str, Any]]:
    found = [json.loads(r.value) for r in records(bootstrap, topic_name(ReharmonisationRequested))]
    return [f for f in found if f["submission_id"] == submission_id]


def test_a_cold_sample_is_recalled_rerun_with_the_campaigns_release_and_counted_off(
    archive: ArchiveReader, kafka_bootstrap: str, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    sample = f"CP{run}"
    # An archive of the test's own (store, headers, tiers), with the session's archive key, so
    # that the archive service it starts moves no other suite's bodies.
    store, headers = (tmp_path / "store").as_uri(), (tmp_path / "headers").as_uri()
    own = ArchiveReader(HeaderStore(store, headers), archive.key)
    places = {
        "GENOMHUB_STORE": store,
        "GENOMHUB_HEADER_STORE": headers,
        "GENOMHUB_TIER_WARM": (tmp_path / "warm").as_uri(),
        "GENOMHUB_TIER_COLD": (tmp_path / "cold").as_uri(),
        "GENOMHUB_TIER_RECALL_DELAY": "1",
    }
    reads = simulate_paired_reads(
        StackSettings().reference(), tmp_path / sample, prefix=sample, coverage=0.5, snps=5, seed=17
    )
    fastq = [checked(p, FileRole.RAW_READS, "fastq", archive=own) for p in (reads.fastq_1, reads.fastq_2)]
    intake = validated(f"{run}-c", sample, fastq, HarmonisationPolicy.INTERNATIONAL, needs_harmonisation=True)
    sid = intake.submission.submission_id
    harmoniser, _ = start_harmoniser(tmp_path / "harmoniser.log", **places)
    port = free_port()
    archive_env = {
        **places,
        "GENOMHUB_ARCHIVE_PORT": str(port),
        "GENOMHUB_ARCHIVE_DATABASE_URL": f"sqlite:///{tmp_path / 'archive.sqlite'}",
        "GENOMHUB_ARCHIVE_ROUND_INTERVAL": "0.5",
        "GENOMHUB_TIER_LIFECYCLE": json.dumps({"raw": [0, 0], "harmonised": [1000, 1000]}),
    }
    service = Process(genomhub("run", "archive"), tmp_path / "archive.log", archive_env)
    try:
        send([(intake, new_event_id())])
        [(_, first, _)] = wait_for(lambda: harmonised(kafka_bootstrap, sid), timeout=150, what="the intake's run")
        assert first.status == "succeeded" and first.campaign_id is None, first.log_tail

        # The archive learns the sample (its harmonised outputs, then its reads as received)
        # and sends the reads to tape at once (a zero-day lifecycle).
        service.start()
        service.wait_http(port, "/readyz", timeout=90)
        received = FileReceived(submission=intake.submission, files=intake.files)
        asyncio.run(publish([(received, new_event_id())], "/genomhub/test-receiver", principal="receiver"))
        raw = {f.url.removeprefix(store + "/") for f in intake.files}
        wait_for(
            lambda: {
                m["path"]
                for m in (json.loads(r.value) for r in records(kafka_bootstrap, topic_name(TierMoved)))
                if m["path"] in raw and m["target"] == "cold"
            }
            == raw
            or None,
            timeout=60,
            what="the raw reads on tape",
        )
        assert not any((tmp_path / "store" / p).exists() for p in raw)

        cli = {**archive_env, "GENOMHUB_KAFKA_BOOTSTRAP": kafka_bootstrap}
        planned = subprocess.run(
            genomhub("archive", "campaign", "--reharmonise", "--sarek-version", "3.6.0"),
            env=cli,
            capture_output=True,
            text=True,
        )
        assert planned.returncode == 0, planned.stderr
        assert "1 submission(s) to rerun with nf-core/sarek 3.6.0" in planned.stdout, planned.stdout
        campaign_id = planned.stdout.split()[1].rstrip(":")

        [asked] = wait_for(lambda: reruns_asked(kafka_bootstrap, sid), timeout=60, what="the rerun asked for")
        assert (asked["campaign_id"], asked["sarek_version"]) == (campaign_id, "3.6.0")
        done = wait_for(
            lambda: [h for _, h, _ in harmonised(kafka_bootstrap, sid) if h.campaign_id == campaign_id],
            timeout=150,
            what="the campaign's run",
        )
        [rerun] = done
        assert rerun.status == "succeeded", rerun.log_tail
        assert rerun.provenance.parameters["mirrors"] == "nf-core/sarek 3.6.0"
        made = {o.url for o in rerun.outputs if o.kind in ("cram", "vcf")}
        assert made and all(f"/harmonised/{sid}/sarek-3.6.0/" in url for url in made)
        assert not made & {o.url for o in first.outputs}

        status = wait_for(
            lambda: (
                lambda shown: shown if f"campaign {campaign_id}: done" in shown else None
            )(subprocess.run(genomhub("archive", "campaign", "status"), env=cli, capture_output=True, text=True).stdout),
            timeout=30,
            what="the campaign done",
        )
        assert "harmonised 1" in status and "ended" in status, status

        # The request replayed (same event): the harmoniser re-sends the run's event, runs nothing.
        again = ReharmonisationRequested.model_validate(asked | {"requested_at": datetime.now(UTC).isoformat()})
        asyncio.run(publish([(again, new_event_id())], "/genomhub/test-archive", principal="archive"))
        wait_for(
            lambda: len([h for _, h, _ in harmonised(kafka_bootstrap, sid) if h.campaign_id == campaign_id]) > 1
            or None,
            timeout=60,
            what="the stored run sent again",
        )
        ids = {i for _, h, i in harmonised(kafka_bootstrap, sid) if h.campaign_id == campaign_id}
        assert len(ids) == 1, "the very same event, not a second run"
    finally:
        service.stop()
        harmoniser.stop()
