"""Billing as a real process on the real broker: accrue, dead-letter, close, replay.

January 2026 from the minutes is rebuilt from indexed events on the broker (2,016 GE
against 532,281 DKK: 264 DKK per GE, 532,224 DKK paid, 57 DKK left), in a month of its own
(March 2019) so that indexed events other tests leave on the shared topic cannot touch it.
The replay is the operator's procedure: stop the service, rewind its consumer group to the
earliest offsets (``genomhub replay``), start it again; open-month accruals come back
identical and the closed statement is unchanged.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

from aiokafka.errors import KafkaError

from services.billing.refund import event_id_of, statement_id_of
from services.billing.store import BilledAccrual, BillingStore, LedgerEntry
from shared.auth import token_hash
from shared.bus import group_lag, partitions_of, publish
from shared.envelope import decode, encode, normalise_headers
from shared.events import Indexed, RefundCalculated, Region, SampleStatus
from shared.topics import consumer_group, dlq_name, topic_name
from tests.support import ROOT, Process, free_port, genomhub, kafka, records, wait_for
from tests.unit.billing.billing_factories import indexed

TOKEN = "billing-test-national-token"
MARCH = datetime(2019, 3, 14, 9, tzinfo=UTC)
APRIL = datetime(2019, 4, 2, 9, tzinfo=UTC)


def run(*args: str, env: dict[str, str], ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        genomhub(*args), capture_output=True, text=True, env={**os.environ, **env}, cwd=ROOT, timeout=120
    )
    if ok:
        assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done


def caught_up(bootstrap: str) -> bool:
    """The billing group has committed every indexed record on every partition."""

    async def lag() -> bool:
        parts = await partitions_of(kafka(bootstrap=bootstrap), topic_name(Indexed))
        committed = await group_lag(kafka(bootstrap=bootstrap), consumer_group("billing"))
        return all(tp in committed and committed[tp][0] == committed[tp][1] for tp in parts)

    try:
        return asyncio.run(lag())
    except KafkaError:
        return False


async def send_raw(bootstrap: str, event: Indexed, event_id: str) -> None:
    """An event that passes the schema but contradicts itself (accepted, yet rejected)."""
    headers, _ = encode(event, event_id=event_id, source="/genomhub/test")
    value = json.dumps(
        {**json.loads(event.model_dump_json()), "accepted": True, "status": SampleStatus.REJECTED.value}
    ).encode()
    producer = kafka("indexer", bootstrap).producer()
    await producer.start()
    try:
        await producer.send_and_wait(topic_name(Indexed), value, key=event.key().encode(), headers=headers)
    finally:
        await producer.stop()


def snapshot(url: str) -> tuple[list[BilledAccrual], str | None, list[LedgerEntry]]:
    store = BillingStore(url, migrate=False)
    try:
        statement = store.statement("2019-03")
        doc = None if statement is None else json.dumps(statement.document(), sort_keys=True)
        return store.billed(), doc, store.ledger()
    finally:
        store.dispose()


def billed_months(url: str, prefix: str) -> dict[str, str]:
    return {
        b.accrual.sample_id: b.billed_month
        for b in snapshot(url)[0]
        if b.accrual.sample_id.startswith(prefix)
    }


def test_billing_accrues_closes_and_replays_identically(kafka_bootstrap: str, tmp_path: Path) -> None:
    run_id = uuid.uuid4().hex[:8]
    url = f"sqlite:///{tmp_path / 'billing.sqlite'}"
    port = free_port()
    env = {
        "GENOMHUB_BILLING_DATABASE_URL": url,
        "GENOMHUB_BILLING_PORT": str(port),
        "GENOMHUB_BILLING_STANDARD_RATE_DKK": "300",
        "GENOMHUB_TOKENS": json.dumps({token_hash(TOKEN): "ngc"}),
    }
    run("billing", "grant", "add", "532281", "--by", "finance", "--note", "NNF balance", env=env)

    # 252 samples of 8 GE = 2,016 GE in March (no real sample reaches 10 GE); one of them delivered twice, with two ids
    regions = list(Region)
    march = [
        (
            indexed(
                f"{run_id}-M{i}", region=regions[i % 5], department=f"D{i % 2}", received_at=MARCH, ge="8"
            ),
            f"{run_id}-m{i}",
        )
        for i in range(252)
    ]
    march.append((march[0][0], f"{run_id}-m0-again"))
    others = [
        (indexed(f"{run_id}-REJ", received_at=MARCH, accepted=False), f"{run_id}-rej"),
        # 00:30 on 1 April in Copenhagen: April's
        (
            indexed(f"{run_id}-EDGE", received_at=datetime(2019, 3, 31, 22, 30, tzinfo=UTC), ge="2"),
            f"{run_id}-edge",
        ),
        (indexed(f"{run_id}-A1", received_at=APRIL, ge="1.5", region=Region.NORDJYLLAND), f"{run_id}-a1"),
    ]
    asyncio.run(publish(march + others, "/genomhub/test", principal="indexer"))
    bad = indexed(f"{run_id}-BAD", received_at=MARCH)
    asyncio.run(send_raw(kafka_bootstrap, bad, f"{run_id}-bad"))

    service = Process(genomhub("run", "billing"), tmp_path / "billing.log", env)
    service.start()
    try:
        service.wait_http(port, "/readyz", timeout=90)
        expected = {f"{run_id}-M{i}": "2019-03" for i in range(252)} | {
            f"{run_id}-EDGE": "2019-04",
            f"{run_id}-A1": "2019-04",
        }
        wait_for(lambda: billed_months(url, run_id) == expected, timeout=90, what="the accruals")
        dead = wait_for(
            lambda: [
                r
                for r in records(kafka_bootstrap, dlq_name(topic_name(Indexed)))
                if dict(normalise_headers(r.headers)).get("ce_id") == f"{run_id}-bad".encode()
            ],
            what="the contradictory event in the DLQ",
        )
        reason = dict(normalise_headers(dead[0].headers))
        assert reason["genomhub_dlq_service"] == b"billing" and b"contradicts" in reason["genomhub_dlq_error"]

        # close March: the minutes' January, through the broker
        closed = run("billing", "close", "2019-03", "--by", "finance", env=env).stdout
        assert "at 264 DKK = 532.224,00 kr." in closed and "-> 57,00 kr." in closed
        sid = statement_id_of("2019-03")
        refunds = [
            decode(normalise_headers(r.headers), r.value, RefundCalculated)
            for r in records(kafka_bootstrap, topic_name(RefundCalculated))
            if r.key == b"2019-03"
        ]
        assert len(refunds) == 1 and refunds[0].id == event_id_of(sid)
        event = refunds[0].data
        assert (event.statement_id, event.rate_dkk, event.total_ore, event.balance_after_ore) == (
            sid,
            264,
            532_224_00,
            57_00,
        )
        assert event.currency == "DKK" and sum(r.amount_ore for r in event.regions) == event.total_ore

        # a late March sample lands on April as an adjustment
        asyncio.run(
            publish(
                [(indexed(f"{run_id}-LATE", received_at=MARCH, ge="3"), f"{run_id}-late")],
                "/genomhub/test",
                principal="indexer",
            )
        )
        wait_for(
            lambda: billed_months(url, run_id).get(f"{run_id}-LATE") == "2019-04", what="the late arrival"
        )
        wait_for(lambda: caught_up(kafka_bootstrap), timeout=60, what="the service to commit")

        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/refunds/2019-03?format=html")
        request.add_header("Authorization", f"Bearer {TOKEN}")
        with urllib.request.urlopen(request, timeout=10) as response:
            page = response.read().decode()
        assert "532.224,00 kr." in page and "<svg" in page and "apr. 2019 (åben)" in page
    finally:
        service.stop()
    before = snapshot(url)

    # rewind the group to the earliest offsets and consume everything again
    wait_for(
        lambda: run("replay", "--service", "billing", "--to-earliest", env=env, ok=False).returncode == 0,
        timeout=60,
        what="the group to empty and accept the rewind",
    )
    assert not caught_up(kafka_bootstrap)
    again = Process(genomhub("run", "billing"), tmp_path / "billing-replay.log", env)
    again.start()
    try:
        again.wait_http(port, "/readyz", timeout=90)
        wait_for(lambda: caught_up(kafka_bootstrap), timeout=120, what="the replay to finish")
    finally:
        again.stop()
    after = snapshot(url)
    assert after == before  # every accrual, the closed statement and the ledger, unchanged
    late = next(b for b in after[0] if b.accrual.sample_id == f"{run_id}-LATE")
    assert (late.accrual.received_month, late.billed_month) == ("2019-03", "2019-04")

    # closing March again returns the same statement and sends nothing
    closed_again = run("billing", "close", "2019-03", env=env).stdout
    assert closed_again.startswith("already closed") and sid in closed_again and "emitted" not in closed_again
    assert [r.key for r in records(kafka_bootstrap, topic_name(RefundCalculated))].count(b"2019-03") == 1
