"""The folder tiers: a copy is whole or absent and proven by its bytes; the folder cold tier
behaves as tape does (a recall waits for a drive and takes its time, then pins the body)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from shared.tiers import FolderColdTier, FolderTier, NotStaged, TierError, digest_of


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def body(n: int) -> bytes:
    return bytes(range(256)) * n


def test_a_warm_copy_reads_back_as_the_bytes_sent(tmp_path: Path) -> None:
    warm = FolderTier("warm", (tmp_path / "warm").as_uri())
    stored = warm.store("hovedstaden/S1/R1.fastq.gz.c4gh", io.BytesIO(body(5000)))
    assert stored == digest_of(io.BytesIO(body(5000)))
    assert digest_of(warm.open("hovedstaden/S1/R1.fastq.gz.c4gh")) == stored


def test_a_store_cut_short_leaves_no_body_and_its_remains_are_discarded(tmp_path: Path) -> None:
    class Cut(io.BytesIO):
        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            if self.tell() > 0:
                raise OSError("source went away")
            return super().readinto(buffer[:100])

    warm = FolderTier("warm", (tmp_path / "warm").as_uri())
    with pytest.raises(OSError, match="source went away"):
        warm.store("hovedstaden/S1/a.c4gh", Cut(body(10)))
    assert not warm.exists("hovedstaden/S1/a.c4gh")
    warm.discard_partial("hovedstaden/S1/a.c4gh")
    assert list((tmp_path / "warm" / "hovedstaden" / "S1").iterdir()) == []


def test_a_cold_body_is_read_only_after_its_recall_has_held_a_drive_for_the_delay(tmp_path: Path) -> None:
    clock = FakeClock()
    cold = FolderColdTier((tmp_path / "cold").as_uri(), delay=60, drives=2, clock=clock)
    for name in ("a", "b", "c"):
        cold.store(f"r/S/{name}", io.BytesIO(body(4)))
    assert cold.residence("r/S/a").state == "offline"
    with pytest.raises(NotStaged):
        cold.open("r/S/a")

    assert [cold.recall(f"r/S/{n}", pin_seconds=3600).state for n in "abc"] == ["recalling"] * 3
    assert cold.recall("r/S/a", pin_seconds=3600).state == "recalling"  # asked again: the same recall
    clock.now += 60
    assert [cold.residence(f"r/S/{n}").state for n in "abc"] == ["staged", "staged", "recalling"]
    assert digest_of(cold.open("r/S/a")) == digest_of(io.BytesIO(body(4)))
    clock.now += 59
    assert cold.residence("r/S/c").state == "recalling"  # c got a drive only when a and b freed theirs
    clock.now += 1
    assert cold.residence("r/S/c").state == "staged"
    clock.now += 3600
    assert cold.residence("r/S/a").state == "offline"  # its pin ended: on tape only again


def test_a_recall_under_way_survives_a_restart(tmp_path: Path) -> None:
    clock = FakeClock()
    url = (tmp_path / "cold").as_uri()
    FolderColdTier(url, delay=60, drives=1, clock=clock).store("r/S/a", io.BytesIO(b"x" * 10))
    FolderColdTier(url, delay=60, drives=1, clock=clock).recall("r/S/a", pin_seconds=600)
    clock.now += 30
    restarted = FolderColdTier(url, delay=60, drives=1, clock=clock)
    assert restarted.residence("r/S/a").state == "recalling"
    clock.now += 30
    assert restarted.residence("r/S/a").state == "staged"


def test_recalling_what_the_tier_does_not_hold_is_refused(tmp_path: Path) -> None:
    cold = FolderColdTier((tmp_path / "cold").as_uri(), delay=1, drives=1, clock=FakeClock())
    with pytest.raises(TierError, match="no body at r/S/missing"):
        cold.recall("r/S/missing", pin_seconds=60)
