"""The spoke's catalogue shows whole verified revisions only: applied at once with their
number, never an older one, and rebuilt from the feed after a restart or a lost database."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.publisher.writer import FeedWriter, Record
from services.spoke.store import OlderRevision, SpokeStore
from services.spoke.verifier import FeedVerifier, Revision
from shared.envelope import canonical_json
from shared.events import Region
from shared.feed import FeedRefusal, Withdrawal
from shared.topics import feed_topic
from tests.unit.spoke.test_spoke_feed import NOW, SPOKE, published, record, summary


def revisions(spoke: FeedVerifier, records: list[Record]) -> list[Revision]:
    shown = []
    for r in records:
        outcome = spoke.receive(r.partition, r.key, r.value)
        assert not outcome.refused
        if outcome.revision is not None:
            shown.append(outcome.revision)
    return shown


@pytest.fixture
def store(tmp_path: Path) -> SpokeStore:
    return SpokeStore(f"sqlite:///{tmp_path / 'spoke.sqlite'}", feed_topic(SPOKE))


def history() -> tuple[FeedWriter, list[Record]]:
    writer = FeedWriter(SPOKE, Ed25519PrivateKey.generate(), partitions=3)
    log = published(writer, [summary("S1"), summary("S2"), record("OWN1")])
    log.append(writer.checkpoint(NOW))
    log += published(
        writer,
        [summary("S1", files=4), Withdrawal(region=Region.HOVEDSTADEN, sample_id="S2", reason="withdrawn")],
    )
    log.append(writer.checkpoint(NOW))
    return writer, log


def test_each_revision_is_applied_with_its_number(store: SpokeStore) -> None:
    writer, log = history()
    spoke = FeedVerifier(SPOKE, writer.key.public_key())
    first, second = revisions(spoke, log)
    store.apply(first)
    assert store.shown() is not None and store.shown().revision == 1  # type: ignore[union-attr]
    assert set(store.samples()) == {"hovedstaden/S1", "hovedstaden/S2", "syddanmark/OWN1"}
    store.apply(second)
    shown = store.shown()
    assert shown is not None and (shown.revision, shown.state_hash) == (2, writer.state_hash())
    assert store.state_hash() == writer.state_hash()
    assert set(store.samples()) == {"hovedstaden/S1", "syddanmark/OWN1"}
    assert store.samples()["hovedstaden/S1"].files == 4
    with pytest.raises(OlderRevision):
        store.apply(first)
    assert store.shown().revision == 2  # type: ignore[union-attr]


def test_an_apply_cut_off_midway_leaves_the_previous_revision(
    store: SpokeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, log = history()
    first, second = revisions(FeedVerifier(SPOKE, writer.key.public_key()), log)
    store.apply(first)
    before = store.samples()
    real, calls = canonical_json, iter(range(100))

    def dies_at_the_second_sample(value: object) -> bytes:
        if next(calls) == 1:
            raise RuntimeError("killed mid-apply")
        return real(value)

    monkeypatch.setattr("services.spoke.store.canonical_json", dies_at_the_second_sample)
    with pytest.raises(RuntimeError, match="killed"):
        store.apply(second, whole=True)  # the old samples already deleted in its transaction
    assert store.shown().revision == 1 and store.samples() == before  # type: ignore[union-attr]


def test_a_restarted_spoke_proves_its_revision_again_and_goes_on(store: SpokeStore, tmp_path: Path) -> None:
    writer, log = history()
    first, _ = revisions(FeedVerifier(SPOKE, writer.key.public_key()), log)
    store.apply(first)
    shown = store.shown()
    assert shown is not None
    # Restarted: the feed read again from its start, nothing older than the stored revision.
    again = FeedVerifier(SPOKE, writer.key.public_key(), floor=shown.revision)
    proven = revisions(again, log)
    assert [r.revision for r in proven] == [1, 2]  # the stored one proven again, then the next
    store.apply(proven[0], whole=True)
    assert store.samples() == {k: h.body for k, h in first.samples.items()}
    store.apply(proven[1])
    assert store.state_hash() == writer.state_hash()
    # A spoke that lost its database rebuilds from the feed alone.
    rebuilt = SpokeStore(f"sqlite:///{tmp_path / 'rebuilt.sqlite'}", feed_topic(SPOKE))
    for revision in revisions(FeedVerifier(SPOKE, writer.key.public_key()), log):
        rebuilt.apply(revision)
    assert rebuilt.samples() == store.samples()


def test_a_restarted_spoke_refuses_a_revision_older_than_the_one_it_stored() -> None:
    writer, log = history()
    spoke = FeedVerifier(SPOKE, writer.key.public_key(), floor=2)
    first_checkpoint = next(i for i, r in enumerate(log) if r.key == b"checkpoint")
    revisions(spoke, log[:first_checkpoint])
    stale = log[first_checkpoint]
    with pytest.raises(FeedRefusal) as refused:
        spoke.receive(stale.partition, stale.key, stale.value)
    assert refused.value.reason == "rollback" and spoke.visible_revision == 0
