"""Readers follow a body down the tiers (shared.tiers.ArchiveTiers with the one read path,
shared.storage.open_archived): named by its intake URL for ever, read wherever it is now, and
on tape that no recall staged a clear NeedsRecall before a byte is read."""

from __future__ import annotations

import contextlib
import io
import pickle
from pathlib import Path

import pytest

from shared.encryption import ArchiveKey, load_archive_key, write_key_pair
from shared.envelope import RefusedEvent
from shared.headers import HeaderStore
from shared.storage import ArchiveReader, seal
from shared.tiers import NEEDS_RECALL, ArchiveTiers, NeedsRecall, Tier, TierName, require_readable

PASSPHRASE = "a passphrase for the test"
PATH = "hovedstaden/S1/sub-1/reads_R1.fastq.gz"
PLAINTEXT = bytes(range(256)) * 3000


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> ArchiveKey:
    secret, public = write_key_pair(tmp_path_factory.mktemp("key"), PASSPHRASE)
    return load_archive_key(secret, public, PASSPHRASE)


def tiers_at(root: Path, delay: float) -> ArchiveTiers:
    return ArchiveTiers(
        (root / "store").as_uri(), (root / "warm").as_uri(), (root / "cold").as_uri(), delay=delay, drives=1
    )


def archived(root: Path, key: ArchiveKey, tiers: ArchiveTiers) -> tuple[ArchiveReader, str]:
    headers = HeaderStore(tiers.hot, (root / "headers").as_uri())
    url = f"{tiers.hot}/{PATH}"
    seal(url, [PLAINTEXT], headers, key.public)
    return ArchiveReader(headers, key, tiers), url


def move(placed: dict[TierName, Tier], source: TierName, target: TierName) -> None:
    """A body taken to another tier as the archive's mover takes it: copied whole, then the source removed."""
    with contextlib.closing(placed[source].open(PATH)) as stream:
        placed[target].store(PATH, stream)
    placed[source].remove(PATH)


def read(reader: ArchiveReader, url: str) -> bytes:
    with reader.open(url, len(PLAINTEXT)) as body:
        return io.BufferedReader(body).read()


def test_a_body_is_read_on_the_tier_it_was_moved_to(tmp_path: Path, key: ArchiveKey) -> None:
    tiers = tiers_at(tmp_path, delay=0)
    reader, url = archived(tmp_path, key, tiers)
    assert tiers.locate(url) == url
    move(tiers.placed(), "hot", "warm")
    assert tiers.locate(url) == f"{tiers.warm}/{PATH}"
    assert read(reader, url) == PLAINTEXT


def test_a_cold_body_needs_a_recall_and_reads_once_staged(tmp_path: Path, key: ArchiveKey) -> None:
    tiers = tiers_at(tmp_path, delay=0)
    reader, url = archived(tmp_path, key, tiers)
    placed = tiers.placed()
    move(placed, "hot", "cold")
    with pytest.raises(NeedsRecall) as needs:
        read(reader, url)
    assert needs.value.path == PATH and needs.value.state == "offline"
    assert "needs a recall" in str(needs.value)
    tiers.cold_tier().recall(PATH, pin_seconds=3600)
    assert tiers.locate(url) == f"{tiers.cold}/{PATH}"
    assert read(reader, url) == PLAINTEXT


def test_a_body_under_recall_is_not_read_until_staged(tmp_path: Path, key: ArchiveKey) -> None:
    tiers = tiers_at(tmp_path, delay=3600)
    reader, url = archived(tmp_path, key, tiers)
    move(tiers.placed(), "hot", "cold")
    tiers.cold_tier().recall(PATH, pin_seconds=3600)
    with pytest.raises(NeedsRecall) as needs:
        read(reader, url)
    assert needs.value.state == "recalling"


def test_a_body_on_no_tier_is_not_found(tmp_path: Path, key: ArchiveKey) -> None:
    tiers = tiers_at(tmp_path, delay=0)
    reader, url = archived(tmp_path, key, tiers)
    tiers.placed()["hot"].remove(PATH)
    with pytest.raises(FileNotFoundError, match="no tier of the archive holds"):
        read(reader, url)


def test_the_reader_and_its_refusal_cross_to_a_worker_process(tmp_path: Path, key: ArchiveKey) -> None:
    """The validator hands its reader to a process pool, and a worker's NeedsRecall comes back."""
    tiers = tiers_at(tmp_path, delay=0)
    reader, _url = archived(tmp_path, key, tiers)
    assert pickle.loads(pickle.dumps(reader)).tiers == tiers
    back = pickle.loads(pickle.dumps(NeedsRecall(PATH, "recalling")))
    assert (back.path, back.state, str(back)) == (PATH, "recalling", str(NeedsRecall(PATH, "recalling")))


def test_an_event_whose_bodies_are_on_tape_is_refused_before_any_read(
    tmp_path: Path, key: ArchiveKey
) -> None:
    """The validator's check before it reads: a clear needs_recall dead letter, never a rejection."""
    tiers = tiers_at(tmp_path, delay=0)
    _reader, url = archived(tmp_path, key, tiers)
    require_readable(tiers, [url])  # hot: read at once
    move(tiers.placed(), "hot", "cold")
    with pytest.raises(RefusedEvent) as refused:
        require_readable(tiers, [url])
    assert refused.value.code == NEEDS_RECALL
    assert f"{PATH} (on tape)" in str(refused.value)
