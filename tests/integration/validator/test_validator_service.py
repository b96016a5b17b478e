"""The validator as a real process on the real broker: file-received in, validated out; a
body the archive moved to the warm tier is read there, one on tape is dead-lettered as
needs_recall (never rejected as unreadable) and judged once a recall staged it and
``genomhub dlq redrive --staged`` sent it back."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from services.cli import main
from shared.bus import publish
from shared.encryption import CIPHER_SEGMENT_SIZE, load_archive_key, write_key_pair
from shared.envelope import decode, derive_id, normalise_headers
from shared.events import FileReceived, Validated, new_submission_id
from shared.headers import HeaderStore
from shared.storage import seal
from shared.tiers import FolderColdTier
from shared.topics import dlq_name, topic_name
from tests.support import Process, free_port, genomhub, records, wait_for
from tests.unit.validator import corpus
from tools.stack.environment import StackSettings

PASSPHRASE = "validator service test"


def stored(path: Path, role: str, headers: HeaderStore, public: bytes) -> dict[str, object]:
    """``path`` archived as the receiver archives it: a Crypt4GH body, its header apart."""
    data = path.read_bytes()
    url = f"{headers.store}/syddanmark/{path.parent.name}/{path.name}"
    seal(url, [data], headers, public)
    return {
        "name": path.name,
        "role": role,
        "url": url,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "md5": hashlib.md5(data).hexdigest(),
    }


def received(submission_id: str, files: list[dict[str, object]]) -> FileReceived:
    return FileReceived.model_validate(
        {
            "submission": {
                "submission_id": submission_id,
                "region": "syddanmark",
                "department": "OUH",
                "sample_id": f"S-{submission_id[:8]}",
                "patient_id": "P-0001",
                "analysis_type": "WGS",
                "platform": "ILLUMINA",
                "received_at": datetime(2026, 1, 15, 10, tzinfo=UTC),
            },
            "files": files,
        }
    )


def validated_for(bootstrap: str, ids: set[str]) -> dict[str, tuple[str, Validated]]:
    found = {}
    for record in records(bootstrap, topic_name(Validated)):
        headers = normalise_headers(record.headers)
        # Other suites share the broker and put malformed records here on purpose: look only
        # at this test's submissions, and decode those strictly.
        if dict(headers).get("ce_subject", b"").decode(errors="replace") not in ids:
            continue
        envelope = decode(headers, record.value, Validated)
        found[envelope.subject] = (envelope.id, envelope.data)
    return found


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_verdicts_from_a_running_validator(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    StackSettings().reference()  # the synthetic reference, made once into the shared cache
    secret, public = write_key_pair(tmp_path / "keys", PASSPHRASE)
    key = load_archive_key(secret, public, PASSPHRASE)
    headers = HeaderStore((tmp_path / "store").as_uri(), (tmp_path / "headers").as_uri())
    (tmp_path / "in").mkdir()
    r1, r2 = corpus.fastq_pair(tmp_path / "in", n=2000)
    truncated = tmp_path / "in" / "cut_R1.fastq.gz"
    truncated.write_bytes(r1.read_bytes()[:-300])
    good, bad, spoilt = new_submission_id(), new_submission_id(), new_submission_id()
    warm, cold = new_submission_id(), new_submission_id()
    (tmp_path / "cooled").mkdir()
    cooled = {}
    for tier, submission in (("warm", warm), ("cold", cold)):  # bodies of their own, then moved
        pair = [
            stored(corpus_copy(p, tmp_path / "cooled" / tier), "raw_reads", headers, key.public)
            for p in (r1, r2)
        ]
        moved = Path(str(pair[0]["url"]).removeprefix("file://"))
        target = tmp_path / tier / moved.relative_to(tmp_path / "store")
        target.parent.mkdir(parents=True)
        moved.rename(target)  # as the archive's mover leaves it: on the new tier only
        cooled[submission] = pair
    (tmp_path / "spoilt").mkdir()
    copy = tmp_path / "spoilt" / r1.name  # a body of its own: the pair above keeps theirs whole
    copy.write_bytes(r1.read_bytes())
    spoilt_r1 = stored(copy, "raw_reads", headers, key.public)
    body = Path(str(spoilt_r1["url"]).removeprefix("file://"))
    data = bytearray(body.read_bytes())
    data[CIPHER_SEGMENT_SIZE // 2] ^= 1  # the body changed on disk: segment 0 fails its tag
    body.write_bytes(bytes(data))
    events = [
        (
            received(good, [stored(p, "raw_reads", headers, key.public) for p in (r1, r2)]),
            f"fr-{good}",
        ),
        (
            received(bad, [stored(p, "raw_reads", headers, key.public) for p in (truncated, r2)]),
            f"fr-{bad}",
        ),
        (received(spoilt, [spoilt_r1, stored(r2, "raw_reads", headers, key.public)]), f"fr-{spoilt}"),
        (received(warm, cooled[warm]), f"fr-{warm}"),
        (received(cold, cooled[cold]), f"fr-{cold}"),
    ]
    asyncio.run(publish(events, "/genomhub/test", principal="receiver"))

    tier_env = {
        "GENOMHUB_STORE": headers.store,
        "GENOMHUB_TIER_WARM": (tmp_path / "warm").as_uri(),
        "GENOMHUB_TIER_COLD": (tmp_path / "cold").as_uri(),
        "GENOMHUB_TIER_RECALL_DELAY": "0",  # a recall stages at once: the test recalls by hand
    }
    port = free_port()
    proc = Process(
        genomhub("run", "validator"),
        tmp_path / "validator.log",
        env={
            "GENOMHUB_VALIDATOR_PORT": str(port),
            "GENOMHUB_STORE": headers.store,
            "GENOMHUB_HEADER_STORE": headers.headers,
            "GENOMHUB_ARCHIVE_SECRET_KEY": str(secret),
            "GENOMHUB_ARCHIVE_PUBLIC_KEY": str(public),
            "GENOMHUB_ARCHIVE_KEY_PASSPHRASE": PASSPHRASE,
            **tier_env,
        },
    )
    proc.start()
    try:
        proc.wait_http(port)
        found = wait_for(
            lambda: v if len(v := validated_for(kafka_bootstrap, {good, bad, spoilt, warm})) == 4 else None,
            timeout=120,
            what="four validated events",
        )
        [dead] = wait_for(
            lambda: [
                r
                for r in records(kafka_bootstrap, dlq_name(topic_name(FileReceived)))
                if dict(normalise_headers(r.headers)).get("ce_subject") == cold.encode()
            ],
            timeout=60,
            what="the cold submission dead-lettered",
        )
        letter_id = f"{dead.topic}:{dead.partition}:{dead.offset}"
        assert cold not in validated_for(kafka_bootstrap, {cold})  # no verdict on bytes never read
        for variable, value in tier_env.items():
            monkeypatch.setenv(variable, value)
        waiting = cli("dlq", "redrive", "--staged", "--topic", topic_name(FileReceived))
        assert f"still waiting for tape: {letter_id} ({cooled[cold][0]['url']})" in waiting.output
        assert "nothing to redrive" in waiting.output
        on_tape = str(cooled[cold][0]["url"])[len(headers.store) + 1 :]
        FolderColdTier((tmp_path / "cold").as_uri(), delay=0, drives=1).recall(on_tape, 3600)
        redriven = cli("dlq", "redrive", "--staged", "--topic", topic_name(FileReceived))
        assert (
            f"redriven {letter_id} -> " in redriven.output and "redrove 1 dead letter(s)" in redriven.output
        )
        [(_, from_tape)] = wait_for(
            lambda: list(v.values()) if (v := validated_for(kafka_bootstrap, {cold})) else None,
            timeout=120,
            what="the cold submission validated once its body was staged",
        )
        again = cli("dlq", "redrive", "--staged", "--topic", topic_name(FileReceived))
        assert letter_id not in again.output  # redriven once: neither sent again nor waiting
    finally:
        proc.stop()

    event_id, ok = found[good]
    assert event_id == derive_id(f"fr-{good}", "validator", Validated.ce_type())
    assert ok.verdict.value == "accepted"
    assert ok.raw_reads == 4000 and ok.raw_bases == 400_000
    assert ok.genome_equivalents > 0
    assert ok.harmonisation.needs_harmonisation
    assert all(f.detected_type == "fastq" and f.accepted for f in ok.files)

    _, rejected = found[bad]
    assert rejected.verdict.value == "rejected"
    codes = {p.code for f in rejected.files for p in f.problems}
    assert "gzip.truncated" in codes
    assert rejected.genome_equivalents == 0

    _, unreadable = found[spoilt]
    assert unreadable.verdict.value == "rejected"
    first, second = unreadable.files
    assert [p.code for p in first.problems] == ["archive.unreadable"] and not first.accepted
    assert "fails its Poly1305 tag" in first.problems[0].message
    assert first.detected_type == "unreadable" and second.detected_type == "fastq"

    _, from_warm = found[warm]
    assert from_warm.verdict.value == "accepted" and from_warm.raw_reads == 4000
    letter = dict(normalise_headers(dead.headers))
    assert letter["genomhub_dlq_code"] == b"needs_recall"
    assert b"on tape and need a recall" in letter["genomhub_dlq_error"]
    # No verdict on bytes never read; once staged and redriven, the sample is judged as any other.
    assert from_tape.verdict.value == "accepted" and from_tape.raw_reads == 4000


def corpus_copy(path: Path, folder: Path) -> Path:
    """``path`` copied into ``folder`` (named after the submission's tier), a body of its own."""
    folder.mkdir(exist_ok=True)
    copy = folder / path.name
    copy.write_bytes(path.read_bytes())
    return copy
