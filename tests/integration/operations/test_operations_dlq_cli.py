"""``genomhub dlq list|show|redrive`` against the real broker: a dead letter goes back to its
source topic with its original key, value and headers, and only once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest
from click.testing import CliRunner, Result

from services.cli import main
from services.operations.dlq import REDRIVE_GROUP
from shared.bus import dead_letter_headers
from shared.envelope import Headers, encode, normalise_headers
from shared.events import FileReceived, new_submission_id
from shared.topics import DLQ_SUFFIX, all_topics, dlq_name, topic_name
from tests.integration.operations.kafka_groups import Offsets, bounds, commit
from tests.integration.test_bus import make_event
from tests.support import kafka, records

TOPIC = topic_name(FileReceived)
DLQ = dlq_name(TOPIC)
Park = Callable[[str, Sequence[str]], Offsets]


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def own_letters_only(kafka_bootstrap: str, park: Park) -> int:
    """Count the dead letters earlier tests left as handled, so ``--all`` redrives only this
    test's; and keep the validator's group past what the redrive puts on file-received.
    Returns how many letters earlier tests left on :data:`DLQ` (the list counts them as
    handled, beside this test's)."""
    dlqs = [t.name for t in all_topics(1) if t.name.endswith(DLQ_SUFFIX)]
    starts, ends = bounds(kafka_bootstrap, dlqs)
    commit(kafka_bootstrap, REDRIVE_GROUP, ends)
    park("genomhub-validator", [TOPIC])
    return sum(end - starts[place] for place, end in ends.items() if place[0] == DLQ)


async def dead_letter(
    bootstrap: str, key: bytes, value: bytes, original: Headers, *, code: str, error: str, partition: int
) -> str:
    """Write a dead letter of the validator as ``Service.dead_letter`` does; returns its id."""
    headers = dead_letter_headers(
        original,
        service="validator",
        error=error,
        code=code,
        topic=TOPIC,
        partition=partition,
        offset=40 + partition,
    )
    producer = kafka("validator", bootstrap).producer()
    await producer.start()
    try:
        meta = await producer.send_and_wait(DLQ, value, key=key, headers=headers)
    finally:
        await producer.stop()
    return f"{DLQ}:{meta.partition}:{meta.offset}"


def on_source(bootstrap: str, key: bytes) -> list[tuple[int, bytes, Headers]]:
    return [
        (r.partition, r.value, normalise_headers(r.headers))
        for r in records(bootstrap, TOPIC)
        if r.key == key
    ]


def test_list_show_and_redrive_once(kafka_bootstrap: str, own_letters_only: int) -> None:
    sid = new_submission_id()
    event = make_event(sid)
    headers, value = encode(event, event_id=f"id-{sid}", source="/genomhub/receiver")
    original = [*headers, ("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]
    key = event.key().encode()
    failed = asyncio.run(
        dead_letter(
            kafka_bootstrap,
            key,
            value,
            original,
            error="RuntimeError: archive unreachable\nTraceback (most recent call last): ...",
            code="handler_failed",
            partition=1,
        )
    )
    junk_key = f"junk-{sid}".encode()
    junk_headers = [("ce_id", f"junk-{sid}".encode()), ("binary", b"\x00\xff")]
    malformed = asyncio.run(
        dead_letter(
            kafka_bootstrap,
            junk_key,
            b"{not json",
            junk_headers,
            error="not_json: Expecting property name",
            code="not_json",
            partition=2,
        )
    )

    listed = cli("dlq", "list", "--topic", "file-received")
    assert listed.exit_code == 0, listed.output
    assert "2 pending" in listed.output.splitlines()[0]
    (line,) = [x for x in listed.output.splitlines() if x.split()[:3] == failed.split(":")]
    for part in (
        "validator",
        "handler_failed",
        f"{TOPIC}:1:41",
        "pending",
        f"id-{sid}",
        sid,
        "archive unreachable",
    ):
        assert part in line
    assert "Traceback" not in line

    shown = cli("dlq", "show", "--id", failed)
    assert shown.exit_code == 0, shown.output
    assert f"dead letter {failed}" in shown.output
    assert "genomhub_dlq_code" in shown.output and "traceparent" in shown.output
    assert f'    "submission_id": "{sid}",' in shown.output  # the JSON value, indented
    assert shown.output.rstrip().endswith("state: pending")

    sent = cli("dlq", "redrive", "--id", failed)
    assert sent.exit_code == 0, sent.output
    assert f"redriven {failed} -> {TOPIC}:1:" in sent.output
    assert on_source(kafka_bootstrap, key) == [(1, value, original)]

    again = cli("dlq", "redrive", "--id", failed)
    assert again.exit_code == 0, again.output
    assert f"already redriven, not sent again: {failed}" in again.output
    assert "nothing to redrive" in again.output

    rest = cli("dlq", "redrive", "--all")
    assert rest.exit_code == 0, rest.output
    assert f"redriven {malformed} -> {TOPIC}:2:" in rest.output
    assert "redrove 1 dead letter(s)" in rest.output
    assert on_source(kafka_bootstrap, junk_key) == [(2, b"{not json", junk_headers)]

    for args in (("--all",), ("--topic", DLQ)):
        nothing = cli("dlq", "redrive", *args)
        assert nothing.exit_code == 0, nothing.output
        assert "nothing to redrive" in nothing.output
    assert len(on_source(kafka_bootstrap, key)) == 1
    assert len(on_source(kafka_bootstrap, junk_key)) == 1

    after = cli("dlq", "list", "--topic", DLQ, "--pending")
    assert after.exit_code == 0, after.output
    earlier = own_letters_only
    assert after.output.splitlines()[0].endswith(
        f"{earlier + 2} dead letter(s), 0 pending, {earlier + 2} redriven"
    )
    assert len(after.output.splitlines()) == 1  # the count, and no pending letter under it


def test_unknown_dead_letters_are_errors(kafka_bootstrap: str) -> None:
    missing = cli("dlq", "show", "--id", f"{DLQ}:0:999999")
    assert missing.exit_code != 0 and "no such dead letter" in missing.output
    redrive = cli("dlq", "redrive", "--id", f"{DLQ}:0:999999")
    assert redrive.exit_code != 0 and "no such dead letter" in redrive.output
    bad = cli("dlq", "redrive", "--id", "genomhub.file-received.v1:0:1")
    assert bad.exit_code != 0 and "not a dead-letter topic" in bad.output
    neither = cli("dlq", "redrive")
    assert neither.exit_code != 0 and "exactly one of" in neither.output
