"""The signed feed: what the hub writes a spoke verifies, and each hostile record is refused
with its own reason and leaves the visible catalogue as it was."""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.publisher.writer import FeedWriter, Record, Stored
from services.spoke.verifier import FeedVerifier
from shared.events import AnalysisType, Region, SampleStatus, Verdict
from shared.feed import (
    Checkpoint,
    FeedEntry,
    FeedRefusal,
    HubKeyError,
    SampleBody,
    SampleRecord,
    SampleSummary,
    StateHash,
    Withdrawal,
    key_id,
    read_hub_public_key,
    read_hub_secret_key,
    seal,
    signed_message,
    write_hub_key_pair,
)
from shared.topics import feed_topic

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
SPOKE = Region.SYDDANMARK


def summary(sample: str, region: Region = Region.HOVEDSTADEN, files: int = 2) -> SampleSummary:
    return SampleSummary(
        region=region,
        sample_id=sample,
        analysis_type=AnalysisType.WGS,
        qc=Verdict.ACCEPTED,
        status=SampleStatus.HARMONISED,
        genome_equivalents=Decimal("1.000000"),
        files=files,
        received_month="2026-11",
    )


def record(sample: str) -> SampleRecord:
    return SampleRecord(
        **summary(sample, SPOKE).model_dump(exclude={"kind"}),
        submission_id="ab" * 16,
        department="Klinisk Genetik, OUH",
        platform="Illumina NovaSeq X",
        received_at=NOW - timedelta(days=3),
        seen_as="own",
    )


@pytest.fixture
def hub_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def writer(hub_key: Ed25519PrivateKey) -> FeedWriter:
    return FeedWriter(SPOKE, hub_key, partitions=3, every=1000)


@pytest.fixture
def spoke(hub_key: Ed25519PrivateKey) -> FeedVerifier:
    return FeedVerifier(SPOKE, hub_key.public_key())


def published(writer: FeedWriter, bodies: Sequence[SampleBody]) -> list[Record]:
    records = [r for b in bodies if (r := writer.publish(b, NOW)) is not None]
    for offset, r in enumerate(records):
        writer.delivered(r.partition, offset)
    return records


def feed(spoke: FeedVerifier, records: list[Record]) -> list[int]:
    """The revisions the records made the spoke show, in order."""
    shown = []
    for r in records:
        outcome = spoke.receive(r.partition, r.key, r.value)
        assert not outcome.refused
        if outcome.revision is not None:
            shown.append(outcome.revision.revision)
    return shown


def interleaved(records: list[Record], seed: int) -> list[Record]:
    """The records as a consumer may see them: each partition in order, partitions mixed."""
    lanes = {p: [r for r in records if r.partition == p] for p in {r.partition for r in records}}
    rng, out = random.Random(seed), []
    while any(lanes.values()):
        lane = rng.choice([p for p, rs in lanes.items() if rs])
        out.append(lanes[lane].pop(0))
    return out


def resealed(value: bytes, signer: Ed25519PrivateKey, **changes: object) -> bytes:
    """The record's entry with ``changes``, signed again by ``signer`` (the hub, or a forger)."""
    entry = FeedEntry.model_validate(json.loads(value)["entry"])
    data = entry.model_dump() | {"signed_by": key_id(signer.public_key())} | changes
    raw = FeedEntry.model_validate(data).model_dump(mode="json")
    signature = signer.sign(signed_message(raw))
    return json.dumps({"entry": raw, "signature": base64.b64encode(signature).decode()}).encode()


def test_a_spoke_shows_the_hubs_revision_once_it_holds_it_whole(writer: FeedWriter) -> None:
    bodies = [summary(f"S{i}") for i in range(12)] + [record("OWN1")]
    records = published(writer, bodies)
    checkpoint = writer.checkpoint(NOW)
    assert {r.partition for r in records} == {0, 1, 2}
    for seed in range(3):  # whatever the interleaving of partitions, the same state and hash
        spoke = FeedVerifier(SPOKE, writer.key.public_key())
        assert feed(spoke, interleaved([*records, checkpoint], seed)) == [1]
        assert spoke.state_hash() == writer.state_hash()
        assert set(spoke.samples) == {f"hovedstaden/S{i}" for i in range(12)} | {"syddanmark/OWN1"}


def test_a_revision_waits_for_every_partition_up_to_the_checkpoint(
    writer: FeedWriter, spoke: FeedVerifier
) -> None:
    records = published(writer, [summary(f"S{i}") for i in range(9)])
    checkpoint = writer.checkpoint(NOW)
    late = next(p for p in (0, 1, 2) if p != checkpoint.partition and any(r.partition == p for r in records))
    early = [r for r in records if r.partition != late]
    assert feed(spoke, [*early, checkpoint]) == []
    assert spoke.visible_revision == 0 and spoke.samples == {}
    assert feed(spoke, [r for r in records if r.partition == late]) == [1]


def test_entries_after_the_checkpoint_wait_for_the_next_one(writer: FeedWriter, spoke: FeedVerifier) -> None:
    first = published(writer, [summary("S1"), summary("S2")])
    checkpoint = writer.checkpoint(NOW)
    later = published(writer, [summary("S3"), summary("S1", files=5)])
    # Later entries of other partitions arrive before the checkpoint that does not cover them.
    ahead = [r for r in later if r.partition != checkpoint.partition]
    assert ahead
    assert feed(spoke, [*first, *ahead, checkpoint]) == [1]
    assert set(spoke.samples) == {"hovedstaden/S1", "hovedstaden/S2"}
    assert spoke.samples["hovedstaden/S1"].body.files == 2
    assert feed(spoke, [*(r for r in later if r not in ahead), writer.checkpoint(NOW)]) == [2]
    assert spoke.samples["hovedstaden/S1"].body.files == 5 and "hovedstaden/S3" in spoke.samples


def test_a_withdrawal_leaves_the_state_and_an_unchanged_body_is_not_sent_again(
    writer: FeedWriter, spoke: FeedVerifier
) -> None:
    records = published(writer, [summary("S1"), summary("S2"), summary("S1")])
    assert len(records) == 2
    assert (
        writer.publish(Withdrawal(region=Region.HOVEDSTADEN, sample_id="S9", reason="withdrawn"), NOW) is None
    )
    records += published(writer, [Withdrawal(region=Region.HOVEDSTADEN, sample_id="S1", reason="withdrawn")])
    feed(spoke, [*records, writer.checkpoint(NOW)])
    assert set(spoke.samples) == {"hovedstaden/S2"}
    assert spoke.state_hash() == writer.state_hash()


def test_a_checkpoint_is_due_every_n_entries_or_t_seconds(hub_key: Ed25519PrivateKey) -> None:
    writer = FeedWriter(SPOKE, hub_key, partitions=1, every=3, interval=2.0)
    assert not writer.due(NOW)
    published(writer, [summary("S1"), summary("S2")])
    assert not writer.due(NOW + timedelta(seconds=1))
    assert writer.due(NOW + timedelta(seconds=2))
    published(writer, [summary("S3")])
    assert writer.due(NOW)
    writer.checkpoint(NOW)
    assert not writer.due(NOW + timedelta(days=1))


def refusal(spoke: FeedVerifier, partition: int, key: bytes | None, value: bytes | None) -> str:
    before = (spoke.visible_revision, dict(spoke.samples), spoke.state_hash())
    with pytest.raises(FeedRefusal) as refused:
        spoke.receive(partition, key, value)
    assert (spoke.visible_revision, dict(spoke.samples), spoke.state_hash()) == before
    return refused.value.reason


def shown_revision_one(writer: FeedWriter, spoke: FeedVerifier) -> list[Record]:
    records = published(writer, [summary("S1"), summary("S2"), summary("S3")])
    assert feed(spoke, [*records, writer.checkpoint(NOW)]) == [1]
    return records


def test_a_forged_entry_is_refused(writer: FeedWriter, spoke: FeedVerifier) -> None:
    shown_revision_one(writer, spoke)
    (entry,) = published(writer, [summary("S4")])
    document = json.loads(entry.value)
    document["entry"]["body"]["files"] = 99  # changed after signing
    tampered = json.dumps(document).encode()
    assert refusal(spoke, entry.partition, entry.key, tampered) == "bad_signature"
    forger = Ed25519PrivateKey.generate()
    assert refusal(spoke, entry.partition, entry.key, resealed(entry.value, forger)) == "unknown_key"
    forged_name = resealed(entry.value, forger, signed_by=key_id(writer.key.public_key()))
    assert refusal(spoke, entry.partition, entry.key, forged_name) == "bad_signature"
    # The genuine entry is still taken afterwards.
    assert not spoke.receive(entry.partition, entry.key, entry.value).refused


def test_a_replayed_entry_is_refused(writer: FeedWriter, spoke: FeedVerifier) -> None:
    records = shown_revision_one(writer, spoke)
    assert refusal(spoke, records[0].partition, records[0].key, records[0].value) == "replayed"
    # Replayed onto another partition, where it would come "in order": still the same entry.
    other = (records[-1].partition + 1) % 3
    assert refusal(spoke, other, records[-1].key, records[-1].value) == "replayed"


def test_a_reordered_entry_is_refused(hub_key: Ed25519PrivateKey) -> None:
    writer = FeedWriter(SPOKE, hub_key, partitions=1)
    spoke = FeedVerifier(SPOKE, hub_key.public_key())
    first, second = published(writer, [summary("S1"), summary("S2")])
    feed(spoke, [second])
    assert refusal(spoke, 0, first.key, first.value) == "reordered"


def test_a_second_entry_under_a_used_sequence_number_is_refused(
    writer: FeedWriter, spoke: FeedVerifier
) -> None:
    records = shown_revision_one(writer, spoke)
    again = resealed(records[0].value, writer.key, body=summary("S1", files=7).model_dump())
    assert refusal(spoke, (records[0].partition + 1) % 3, records[0].key, again) == "duplicate_seq"


def test_an_entry_of_another_feed_or_key_is_refused(writer: FeedWriter, spoke: FeedVerifier) -> None:
    (entry,) = published(writer, [summary("S1")])
    elsewhere = resealed(entry.value, writer.key, feed=feed_topic(Region.NORDJYLLAND))
    assert refusal(spoke, entry.partition, entry.key, elsewhere) == "wrong_feed"
    assert refusal(spoke, entry.partition, b"hovedstaden/S2", entry.value) == "wrong_key"
    renamed = resealed(entry.value, writer.key, key="hovedstaden/S2")
    assert refusal(spoke, entry.partition, b"hovedstaden/S2", renamed) == "wrong_key"


def test_unsigned_or_malformed_records_are_refused(writer: FeedWriter, spoke: FeedVerifier) -> None:
    shown_revision_one(writer, spoke)
    assert refusal(spoke, 0, b"hovedstaden/S1", None) == "unsigned_deletion"
    assert refusal(spoke, 0, b"hovedstaden/S1", b"{not json") == "malformed"
    assert refusal(spoke, 0, b"hovedstaden/S1", b'{"entry": {"seq": NaN}, "signature": ""}') == "malformed"
    assert refusal(spoke, 0, b"hovedstaden/S1", b'{"entry": {}, "signature": "!!"}') == "malformed"
    assert refusal(spoke, 0, b"hovedstaden/S1", b'{"entry": {}, "signature": ""}') == "malformed"


def test_a_checkpoint_older_than_the_shown_revision_is_refused(
    writer: FeedWriter, spoke: FeedVerifier
) -> None:
    shown_revision_one(writer, spoke)
    published(writer, [summary("S4")])
    good = writer.checkpoint(NOW)
    old = FeedEntry.model_validate(json.loads(good.value)["entry"])
    body = old.body
    assert isinstance(body, Checkpoint)
    back = replace_body(old, body.model_copy(update={"revision": 1}), seq=writer.seq + 1)
    assert refusal(spoke, good.partition, good.key, seal(back, writer.key)) == "rollback"
    shrunk = replace_body(old, body.model_copy(update={"revision": 7, "upto": 1}), seq=writer.seq + 2)
    assert refusal(spoke, good.partition, good.key, seal(shrunk, writer.key)) == "rollback"


def replace_body(entry: FeedEntry, body: Checkpoint, seq: int) -> FeedEntry:
    return FeedEntry.model_validate(entry.model_dump() | {"body": body.model_dump(), "seq": seq})


def test_a_checkpoint_whose_hash_does_not_hold_is_refused_and_the_next_one_switches(
    writer: FeedWriter, spoke: FeedVerifier
) -> None:
    records = shown_revision_one(writer, spoke)
    more = published(writer, [summary("S4")])
    genuine = writer.checkpoint(NOW)
    entry = FeedEntry.model_validate(json.loads(genuine.value)["entry"])
    assert isinstance(entry.body, Checkpoint)
    lying = replace_body(entry, entry.body.model_copy(update={"state_hash": "0" * 64}), seq=entry.seq)
    feed(spoke, more)
    outcome = spoke.receive(genuine.partition, genuine.key, seal(lying, writer.key))
    assert outcome.revision is None
    assert [r.reason for r in outcome.refused] == ["state_mismatch"]
    assert spoke.visible_revision == 1 and "hovedstaden/S4" not in spoke.samples
    assert feed(spoke, [writer.checkpoint(NOW)]) == [3]
    assert "hovedstaden/S4" in spoke.samples and len(records) == 3


def test_a_rolled_over_key_signs_from_its_announcement_on(writer: FeedWriter, spoke: FeedVerifier) -> None:
    shown_revision_one(writer, spoke)
    old_key, new_key = writer.key, Ed25519PrivateKey.generate()
    announcements = writer.roll_over(new_key, NOW)
    assert sorted(r.partition for r in announcements) == [0, 1, 2]
    (after,) = published(writer, [summary("S5")])
    # Before its partition's announcement, an entry signed by the new key is not believed.
    early = FeedVerifier(SPOKE, old_key.public_key())
    assert refusal(early, after.partition, after.key, after.value) == "unknown_key"
    feed(spoke, announcements)
    old_signed = resealed(after.value, old_key)
    assert refusal(spoke, after.partition, after.key, old_signed) == "retired_key"
    assert feed(spoke, [after, writer.checkpoint(NOW)]) == [2]
    assert spoke.state_hash() == writer.state_hash()
    # An announcement moved to another partition than it names is refused.
    moved = announcements[0]
    assert refusal(FeedVerifier(SPOKE, old_key.public_key()), 1, moved.key, moved.value) == "wrong_partition"


def test_the_state_hash_is_a_set_hash_that_counts_every_key_once() -> None:
    pairs = [(f"hovedstaden/S{i}", f"{i:064x}") for i in range(50)]
    forward, backward, twice = StateHash(), StateHash(), StateHash()
    for key, digest in pairs:
        forward.add(key, digest)
    for key, digest in reversed(pairs):
        backward.add(key, digest)
    assert forward.hexdigest() == backward.hexdigest()
    for key, digest in [*pairs, pairs[0], pairs[0]]:
        twice.add(key, digest)
    # An XOR of per-key hashes would not see a pair counted three times; the product does.
    assert twice.hexdigest() != forward.hexdigest()
    updated = forward.copy()
    updated.remove(*pairs[3])
    updated.add(pairs[3][0], "f" * 64)
    rebuilt = StateHash()
    for key, digest in pairs:
        rebuilt.add(key, "f" * 64 if key == pairs[3][0] else digest)
    assert updated.hexdigest() == rebuilt.hexdigest() != forward.hexdigest()
    swapped = StateHash()  # the same digests under other keys: another state
    for (key, _), (_, digest) in zip(pairs, reversed(pairs), strict=True):
        swapped.add(key, digest)
    assert swapped.hexdigest() != forward.hexdigest()


def test_a_summary_has_no_place_for_what_identifies_or_locates() -> None:
    fields = set(SampleSummary.model_fields)
    assert not fields & {"patient_id", "department", "url", "files_urls", "header", "received_at"}
    with pytest.raises(ValueError):
        SampleSummary.model_validate(summary("S1").model_dump() | {"patient_id": "P1"})
    assert "patient_id" not in SampleRecord.model_fields and "url" not in SampleRecord.model_fields


def test_hub_key_files(tmp_path: Path) -> None:
    secret, public = write_hub_key_pair(tmp_path / "keys", "a passphrase")
    assert secret.stat().st_mode & 0o077 == 0
    key = read_hub_secret_key(secret, "a passphrase")
    assert key_id(key.public_key()) == key_id(read_hub_public_key(public))
    with pytest.raises(HubKeyError, match="passphrase"):
        read_hub_secret_key(secret, "wrong")
    with pytest.raises(HubKeyError, match="exists"):
        write_hub_key_pair(tmp_path / "keys", "a passphrase")
    with pytest.raises(HubKeyError, match="passphrase"):
        write_hub_key_pair(tmp_path / "other", "")
    with pytest.raises(HubKeyError, match="not a PEM public key"):
        read_hub_public_key(secret)
    assert base64.b64decode(json.loads(seal_one(key))["signature"])


def seal_one(key: Ed25519PrivateKey) -> bytes:
    writer = FeedWriter(SPOKE, key, partitions=1)
    record = writer.publish(summary("S1"), NOW)
    assert record is not None
    return record.value


def test_genomhub_keys_generate_hub_and_check_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from services.operations.keys import keys

    monkeypatch.setenv("GENOMHUB_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    for name in ("GENOMHUB_HUB_KEY_PASSPHRASE", "GENOMHUB_HUB_SECRET_KEY", "GENOMHUB_HUB_PUBLIC_KEY"):
        monkeypatch.delenv(name, raising=False)  # a session's own hub key (tests/conftest.py)
    runner = CliRunner()
    assert "GENOMHUB_HUB_KEY_PASSPHRASE" in runner.invoke(keys, ["generate-hub", "--out", "k"]).output
    monkeypatch.setenv("GENOMHUB_HUB_KEY_PASSPHRASE", "a passphrase")
    made = runner.invoke(keys, ["generate-hub", "--out", str(tmp_path / "keys")])
    assert made.exit_code == 0, made.output
    assert f"GENOMHUB_SPOKE_HUB_PUBLIC_KEY={tmp_path / 'keys' / 'hub.pub'}" in made.output
    checked = runner.invoke(keys, ["check-hub"])
    assert checked.exit_code == 0 and "unlocks" in checked.output
    write_hub_key_pair(tmp_path / "other", "a passphrase")
    monkeypatch.setenv("GENOMHUB_HUB_PUBLIC_KEY", str(tmp_path / "other" / "hub.pub"))
    mismatched = runner.invoke(keys, ["check-hub"])
    assert mismatched.exit_code == 1 and "not the public half" in mismatched.output


def stored(records: list[Record]) -> list[Stored]:
    """The records as the hub's cluster holds them, each partition numbered from 0."""
    counts: dict[int, int] = {}
    out = []
    for r in records:
        out.append(Stored(r.partition, counts.get(r.partition, 0), r.value))
        counts[r.partition] = counts.get(r.partition, 0) + 1
    return out


def compacted(records: list[Record]) -> list[Record]:
    """What compaction leaves: each key's last record, in the log's order."""
    last = {r.key: r for r in records}
    return [r for r in records if last[r.key] is r]


def test_a_restarted_publisher_goes_on_from_its_feed(writer: FeedWriter) -> None:
    log = published(writer, [summary(f"S{i}") for i in range(6)])
    log.append(writer.checkpoint(NOW))
    log += published(
        writer,
        [summary("S1", files=9), Withdrawal(region=Region.HOVEDSTADEN, sample_id="S2", reason="withdrawn")],
    )
    for kept in (log, compacted(log)):
        again = FeedWriter.restore(SPOKE, writer.key, 3, stored(kept))
        assert (again.seq, again.revision, again.upto, again.samples) == (
            writer.seq,
            writer.revision,
            writer.upto,
            writer.samples,
        )
        assert again.state_hash() == writer.state_hash()
        assert again.due(NOW)  # two entries after the last checkpoint
        assert again.publish(summary("S3"), NOW) is None  # the spoke has it already
    # A spoke that read the compacted feed from the start and one that followed it live
    # switch to the same revision when the restarted publisher checkpoints.
    again = FeedWriter.restore(SPOKE, writer.key, 3, stored(compacted(log)))
    follower, newcomer = (
        FeedVerifier(SPOKE, writer.key.public_key()),
        FeedVerifier(SPOKE, writer.key.public_key()),
    )
    feed(follower, log)
    # Compaction took S1's and S2's first entries, which the old checkpoint still counts:
    # the newcomer refuses that revision, and shows nothing until the next one.
    refused = [
        f.reason for r in compacted(log) for f in newcomer.receive(r.partition, r.key, r.value).refused
    ]
    assert refused == ["state_mismatch"] and newcomer.visible_revision == 0
    following = again.checkpoint(NOW)
    assert feed(follower, [following]) == feed(newcomer, [following]) == [2]
    assert follower.samples == newcomer.samples and "hovedstaden/S2" not in follower.samples


def test_a_publisher_goes_on_only_with_the_key_that_signs_the_feed(writer: FeedWriter) -> None:
    log = [*published(writer, [summary(f"S{i}") for i in range(4)]), writer.checkpoint(NOW)]
    with pytest.raises(HubKeyError, match="not by this key"):
        FeedWriter.restore(SPOKE, Ed25519PrivateKey.generate(), 3, stored(log))
    # After a rollover the feed is the new key's, on every partition: the old one may not go on.
    old_key, new_key = writer.key, Ed25519PrivateKey.generate()
    log += writer.roll_over(new_key, NOW)
    assert FeedWriter.restore(SPOKE, new_key, 3, stored(log)).seq == writer.seq
    with pytest.raises(HubKeyError):
        FeedWriter.restore(SPOKE, old_key, 3, stored(log))


def test_the_checked_in_feed_schema_matches_the_models_and_a_sealed_record() -> None:
    import jsonschema

    from shared.feed import FEED_SCHEMA_PATH, render_feed_schema

    assert FEED_SCHEMA_PATH.read_text() == render_feed_schema(), "run `genomhub schemas write`"
    schema = json.loads(FEED_SCHEMA_PATH.read_text())
    writer = FeedWriter(SPOKE, Ed25519PrivateKey.generate(), partitions=1)
    records = [*published(writer, [summary("S1"), record("OWN1")]), writer.checkpoint(NOW)]
    for r in records:
        jsonschema.validate(json.loads(r.value), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(json.loads(records[0].value) | {"extra": 1}, schema)


def test_signatures_checked_ahead_of_a_batch_decide_nothing_the_reader_would_not(
    writer: FeedWriter, spoke: FeedVerifier
) -> None:
    """A first sync checks a poll batch's signatures ahead, on every core; the reader still
    decides in order which key must have signed each record: a forgery, an entry of the
    retired key and a malformed value are refused exactly as one by one."""
    shown_revision_one(writer, spoke)
    (entry,) = published(writer, [summary("S4")])
    forger = Ed25519PrivateKey.generate()
    forged_name = resealed(entry.value, forger, signed_by=key_id(writer.key.public_key()))
    values = [forged_name, resealed(entry.value, forger), b"not json", entry.value]
    opened = spoke.opened(values, ThreadPoolExecutor(2))
    assert isinstance(opened[2], FeedRefusal) and opened[2].reason == "malformed"
    reasons = []
    for value in opened[:3]:
        with pytest.raises(FeedRefusal) as refused:
            spoke.receive(entry.partition, entry.key, value)
        reasons.append(refused.value.reason)
    assert reasons == ["bad_signature", "unknown_key", "malformed"]
    assert not spoke.receive(entry.partition, entry.key, opened[3]).refused

    # After a rollover, an entry the old key signed verifies ahead against the old key, which
    # the reader knows, and is refused all the same: that key no longer signs this partition.
    old_key = writer.key
    announcements = writer.roll_over(Ed25519PrivateKey.generate(), NOW)
    (after,) = published(writer, [summary("S5")])
    old_signed = resealed(after.value, old_key)
    batch = [r.value for r in announcements] + [old_signed, after.value]
    opened = spoke.opened(batch, ThreadPoolExecutor(2))
    for record, value in zip(announcements, opened, strict=False):
        assert not spoke.receive(record.partition, record.key, value).refused
    with pytest.raises(FeedRefusal, match="retired_key"):
        spoke.receive(after.partition, after.key, opened[-2])
    assert not spoke.receive(after.partition, after.key, opened[-1]).refused  # checked in order
    assert feed(spoke, [writer.checkpoint(NOW)]) == [2]
    assert spoke.state_hash() == writer.state_hash()
