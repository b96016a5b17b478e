"""Moves between tiers, killed at every step: afterwards, and after the restart that resumes
them, each body is readable on exactly one tier, the one its row names, with its digest."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.archive.moves import Mover, due_moves
from services.archive.placement import Move, PlacementStore
from shared.config import FileKind
from shared.tiers import FolderColdTier, FolderTier, Tier, TierError, TierName, digest_of

PATH = "hovedstaden/S1/R1.fastq.gz.c4gh"
BODY = bytes(range(256)) * 9000
START = datetime(2026, 3, 1, tzinfo=UTC)


class Killed(BaseException):
    """What SIGKILL is to the move: nothing after it runs."""


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def tiers(root: Path, clock: Clock) -> dict[TierName, Tier]:
    return {
        "hot": FolderTier("hot", (root / "hot").as_uri()),
        "warm": FolderTier("warm", (root / "warm").as_uri()),
        "cold": FolderColdTier(
            (root / "cold").as_uri(), delay=0, drives=1, clock=lambda: clock().timestamp()
        ),
    }


def archive(tmp_path: Path, clock: Clock) -> tuple[PlacementStore, dict[TierName, Tier]]:
    store = PlacementStore(f"sqlite:///{tmp_path / 'archive.sqlite'}")
    placed = tiers(tmp_path, clock)
    placed["hot"].store(PATH, io.BytesIO(BODY))
    store.learn(PATH, "hovedstaden/S1", "raw", len(BODY), START)
    return store, placed


def holders(placed: dict[TierName, Tier]) -> list[TierName]:
    return [name for name, tier in placed.items() if tier.exists(PATH)]


def assert_on_one_verified_tier(store: PlacementStore, placed: dict[TierName, Tier]) -> None:
    file = store.file(PATH)
    assert file is not None
    assert holders(placed) == [file.tier]
    if file.tier == "cold":
        placed["cold"].recall(PATH, pin_seconds=60)  # type: ignore[attr-defined]
    assert digest_of(placed[file.tier].open(PATH)) == digest_of(io.BytesIO(BODY))
    assert file.sha256 == digest_of(io.BytesIO(BODY)).sha256


def test_a_move_copies_verifies_records_then_removes(tmp_path: Path) -> None:
    clock = Clock()
    store, placed = archive(tmp_path, clock)
    steps: list[str] = []
    move = Mover(store, placed, clock, lambda step, _m: steps.append(step)).move(PATH, "warm")
    assert (move.state, steps) == ("done", ["copied", "recorded", "removed"])
    assert_on_one_verified_tier(store, placed)
    assert Mover(store, placed, clock).move(PATH, "cold").state == "done"
    assert_on_one_verified_tier(store, placed)
    assert [m.emitted for m in store.unemitted()] == [False, False]


@pytest.mark.parametrize("target", ["warm", "cold"])
@pytest.mark.parametrize("step", ["mid-copy", "copied", "recorded", "removed"])
def test_a_move_killed_at_any_step_resumes_to_one_verified_tier(
    tmp_path: Path, step: str, target: TierName
) -> None:
    clock = Clock()
    store, placed = archive(tmp_path, clock)

    def kill(at: str, _move: Move) -> None:
        if at == step:
            raise Killed(at)

    if step == "mid-copy":

        class CutSource(FolderTier):
            def open(self, path: str) -> io.BufferedReader:
                whole = super().open(path)

                class Cut:
                    seen = 0

                    def readinto(self, buffer: memoryview) -> int:
                        if self.seen:
                            raise Killed("mid-copy")
                        self.seen = whole.readinto(buffer[:1000])
                        return self.seen

                    def close(self) -> None:
                        whole.close()

                return Cut()  # type: ignore[return-value]

        placed["hot"] = CutSource("hot", (tmp_path / "hot").as_uri())
    with pytest.raises(Killed):
        Mover(store, placed, clock, kill).move(PATH, target)
    file = store.file(PATH)
    assert file is not None and file.tier in holders(placed)  # readable where its row says, even now

    restarted = tiers(tmp_path, clock)
    resumed = Mover(PlacementStore(store.url), restarted, clock).resume()
    assert [m.state for m in resumed] == ["done"] and store.open_moves() == []
    assert_on_one_verified_tier(store, restarted)
    assert [p.name for p in tmp_path.rglob("*.part-*")] == []  # nothing half-written left anywhere
    assert store.file(PATH).tier == target  # type: ignore[union-attr]


def test_a_copy_that_does_not_verify_fails_the_move_and_leaves_the_body_where_it_was(tmp_path: Path) -> None:
    clock = Clock()
    store, placed = archive(tmp_path, clock)
    Mover(store, placed, clock).move(PATH, "warm")
    (tmp_path / "warm" / PATH).write_bytes(b"rot" + BODY[3:])  # bit rot on the warm disk
    with pytest.raises(TierError, match="the copy on cold has sha256"):
        Mover(store, placed, clock).move(PATH, "cold")
    [_, failed] = store.every_move()
    assert failed.state == "failed" and failed.reason and "the body" in failed.reason
    assert holders(placed) == ["warm"] and store.file(PATH).tier == "warm"  # type: ignore[union-attr]


def test_the_lifecycle_cools_raw_reads_and_harmonised_outputs_by_their_own_rules(tmp_path: Path) -> None:
    clock = Clock()
    store, placed = archive(tmp_path, clock)
    placed["hot"].store("hovedstaden/S1/out.cram.c4gh", io.BytesIO(b"cram"))
    store.learn("hovedstaden/S1/out.cram.c4gh", "hovedstaden/S1", "harmonised", 4, START)
    lifecycle: dict[FileKind, tuple[int, int]] = {"raw": (30, 180), "harmonised": (90, 365)}
    clock.now = START + timedelta(days=31)
    assert due_moves(store.every_file(), lifecycle, clock()) == [(PATH, "warm")]
    assert [m.state for m in Mover(store, placed, clock).cool(lifecycle)] == ["done"]
    store.touched("hovedstaden/S1/out.cram.c4gh", START + timedelta(days=300))
    clock.now = START + timedelta(days=400)
    assert due_moves(store.every_file(), lifecycle, clock()) == [
        ("hovedstaden/S1/R1.fastq.gz.c4gh", "cold"),
        ("hovedstaden/S1/out.cram.c4gh", "warm"),
    ]
    clock.now = START + timedelta(days=300 + 365)
    assert due_moves(store.every_file(), lifecycle, clock())[-1] == ("hovedstaden/S1/out.cram.c4gh", "cold")
    assert due_moves(store.every_file(), {"raw": (30, 180)}, clock()) == [
        (PATH, "cold")
    ]  # kinds not named stay
