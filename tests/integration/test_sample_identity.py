"""Two regions report the same sample pseudonym: the real indexer and billing, on the broker.

Pseudonyms are the regions' own, so hovedstaden's S and syddanmark's S are two samples. Each
must stay in its own region's catalogue view, accrue its own region's refund, and a later
resubmission of one must be indexed and billed as that region's, leaving the other alone.
The records on the bus are keyed ``<region>/<pseudonym>``.

The received month (November 2026) is later than the months the billing service test closes
(March 2019), so these accruals on the shared topic never hold up that test's close. Month
closes themselves are left to the store tests (``test_billing_store.py``), since a close here
would put a statement on the shared ``refund-calculated`` topic. The test consumes with the
indexer's and billing's own consumer groups, whose service tests replay from the earliest
offset and compare whole databases, so it is kept in this folder, collected after theirs.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from services.billing.store import BillingStore
from shared.auth import token_hash
from shared.bus import publish
from shared.events import Event, Indexed, Region
from shared.topics import emitter_of, topic_name
from tests.ids import issued_id
from tests.support import ROOT, Process, free_port, genomhub, get_json, records, wait_for
from tests.unit.indexer.factories import harmonised, submission, validated

TOKENS = {"ngc": "identity-national", "hovedstaden": "identity-capital", "syddanmark": "identity-south"}
NOVEMBER = datetime(2026, 11, 10, 9, tzinfo=UTC)


def publish_upstream(events: list[tuple[Event, str]]) -> None:
    """Each event as the service that emits it would, in order: the broker refuses any other."""
    for event, event_id in events:
        asyncio.run(
            publish([(event, event_id)], "/genomhub/test-upstream", principal=emitter_of(type(event)))
        )


def http_get(port: int, path: str, holder: str) -> tuple[int, Any]:
    return get_json(f"http://127.0.0.1:{port}{path}", TOKENS[holder])


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        genomhub(*args), capture_output=True, text=True, env={**os.environ, **env}, cwd=ROOT, timeout=120
    )


def accruals(url: str, run_id: str) -> dict[tuple[Region, str], str]:
    """This run's accruals: (region, pseudonym) -> the submission billed."""
    store = BillingStore(url, migrate=False)
    try:
        return {
            (b.accrual.region, b.accrual.sample_id): b.accrual.submission_id
            for b in store.billed()
            if run_id in b.accrual.sample_id
        }
    finally:
        store.dispose()


def shown(port: int, run_id: str, holder: str) -> dict[tuple[str, str], str]:
    """The samples of this run that ``holder``'s token lists: (region, pseudonym) -> status."""
    status, page = http_get(port, f"/v1/samples?q={run_id}&limit=50", holder)
    assert status == 200, page
    return {(s["region"], s["sample_id"]): s["status"] for s in page["items"]}


def test_two_regions_samples_of_one_pseudonym_through_indexer_and_billing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    run_id = uuid.uuid4().hex[:8]
    same, other = f"S-{run_id}", f"T-{run_id}"

    def sub(n: int, sample: str, region: str, days: int = 0) -> Any:
        made = submission(n, sample=sample, region=region, received_at=NOVEMBER + timedelta(days=days))
        return made.model_copy(update={"submission_id": issued_id(f"{run_id}-{n}")})

    capital_s, south_s = sub(1, same, "hovedstaden"), sub(2, same, "syddanmark")
    capital_t, south_t = sub(3, other, "hovedstaden"), sub(4, other, "syddanmark")
    first: list[tuple[Event, str]] = [
        (validated(capital_s, "rejected"), f"{run_id}-v1"),
        (validated(south_s, "accepted"), f"{run_id}-v2"),
        (harmonised(south_s), f"{run_id}-h2"),
        (harmonised(capital_t), f"{run_id}-h3"),
        (harmonised(south_t), f"{run_id}-h4"),
    ]
    publish_upstream(first)

    indexer_port, billing_port = free_port(), free_port()
    env = {
        "GENOMHUB_INDEXER_DATABASE_URL": f"sqlite:///{tmp_path / 'catalogue.sqlite'}",
        "GENOMHUB_BILLING_DATABASE_URL": f"sqlite:///{tmp_path / 'billing.sqlite'}",
        "GENOMHUB_INDEXER_PORT": str(indexer_port),
        "GENOMHUB_BILLING_PORT": str(billing_port),
        "GENOMHUB_TOKENS": json.dumps({token_hash(v): k for k, v in TOKENS.items()}),
    }
    billing_url = env["GENOMHUB_BILLING_DATABASE_URL"]
    indexer = Process(genomhub("run", "indexer"), tmp_path / "indexer.log", env).start()
    billing = Process(genomhub("run", "billing"), tmp_path / "billing.log", env).start()
    try:
        indexer.wait_http(indexer_port, "/readyz", timeout=90)
        billing.wait_http(billing_port, "/readyz", timeout=90)
        expected = {
            ("hovedstaden", same): "rejected",
            ("syddanmark", same): "harmonised",
            ("hovedstaden", other): "harmonised",
            ("syddanmark", other): "harmonised",
        }
        wait_for(lambda: shown(indexer_port, run_id, "ngc") == expected, timeout=90, what="the catalogue")
        for region in ("hovedstaden", "syddanmark"):
            own = {k: v for k, v in expected.items() if k[0] == region}
            assert shown(indexer_port, run_id, region) == own, region
        status, south_detail = http_get(indexer_port, f"/v1/samples/syddanmark/{same}", "syddanmark")
        assert status == 200 and south_detail["submission_id"] == south_s.submission_id
        status, capital_detail = http_get(indexer_port, f"/v1/samples/hovedstaden/{same}", "hovedstaden")
        assert status == 200 and capital_detail["status"] == "rejected"
        assert http_get(indexer_port, f"/v1/samples/hovedstaden/{same}", "syddanmark")[0] == 404

        # Each region's accepted sample is its own accrual; hovedstaden's rejected S is none.
        billed = {
            (Region.SYDDANMARK, same): south_s.submission_id,
            (Region.HOVEDSTADEN, other): capital_t.submission_id,
            (Region.SYDDANMARK, other): south_t.submission_id,
        }
        wait_for(lambda: accruals(billing_url, run_id) == billed, timeout=90, what="the accruals")

        # hovedstaden resubmits its own S, and it passes: indexed and billed as hovedstaden's.
        capital_again = sub(5, same, "hovedstaden", days=2)
        publish_upstream(
            [
                (validated(capital_again, "accepted"), f"{run_id}-v5"),
                (harmonised(capital_again), f"{run_id}-h5"),
            ]
        )
        expected[("hovedstaden", same)] = "harmonised"
        wait_for(lambda: shown(indexer_port, run_id, "ngc") == expected, timeout=60, what="the resubmission")
        billed[(Region.HOVEDSTADEN, same)] = capital_again.submission_id
        wait_for(lambda: accruals(billing_url, run_id) == billed, timeout=60, what="its accrual")
        _, south_after = http_get(indexer_port, f"/v1/samples/syddanmark/{same}", "syddanmark")
        assert south_after["submission_id"] == south_s.submission_id and south_after["submissions"] == 1
    finally:
        billing.stop()
        indexer.stop()

    keys = {r.key for r in records(kafka_bootstrap, topic_name(Indexed)) if run_id.encode() in (r.key or b"")}
    assert keys == {
        f"{region}/{sample}".encode() for region in ("hovedstaden", "syddanmark") for sample in (same, other)
    }
    announced = [
        json.loads(r.value)["submission"]
        for r in records(kafka_bootstrap, topic_name(Indexed))
        if r.key == f"hovedstaden/{same}".encode()
    ]
    assert {s["region"] for s in announced} == {"hovedstaden"}

    # The command line names a sample as the API does: by its region and its pseudonym.
    for region, expected_submission in (("hovedstaden", capital_again), ("syddanmark", south_s)):
        done = cli("catalogue", "show", region, same, env=env)
        assert done.returncode == 0, done.stderr
        detail = json.loads(done.stdout)
        assert (detail["region"], detail["submission_id"]) == (region, expected_submission.submission_id)
    missing = cli("catalogue", "show", "sjaelland", same, env=env)
    assert missing.returncode != 0 and f"no sample {same!r} in sjaelland" in missing.stderr
