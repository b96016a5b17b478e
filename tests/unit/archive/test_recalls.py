"""Recalls on the folder cold tier with a fake clock: WLCG states per file and per request,
drives as the limit, pins, retries with backoff then FAILED with the reason, restarts."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.archive.moves import Mover
from services.archive.placement import PlacementStore
from services.archive.recalls import Recaller, RecallPolicy, request_state
from shared.tiers import FolderColdTier, FolderTier, Residence, Tier, TierError, TierName

START = datetime(2026, 6, 1, tzinfo=UTC)
POLICY = RecallPolicy(drives=2, pin=timedelta(hours=72), attempts=3, backoff=timedelta(minutes=5))


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def seconds(self) -> float:
        return self.now.timestamp()


class Gateway(FolderColdTier):
    """A cold tier whose first ``refusals`` recalls the gateway refuses."""

    refusals = 0

    def recall(self, path: str, pin_seconds: float) -> Residence:
        if self.refusals:
            self.refusals -= 1
            raise TierError("cold: the gateway refused the recall: 503 SlowDown")
        return super().recall(path, pin_seconds)


def archive(tmp_path: Path, clock: Clock, names: list[str]) -> tuple[PlacementStore, Gateway]:
    store = PlacementStore(f"sqlite:///{tmp_path / 'archive.sqlite'}")
    cold = Gateway((tmp_path / "cold").as_uri(), delay=600, drives=2, clock=clock.seconds)
    tiers: dict[TierName, Tier] = {
        "hot": FolderTier("hot", (tmp_path / "hot").as_uri()),
        "warm": FolderTier("warm", (tmp_path / "warm").as_uri()),
        "cold": cold,
    }
    for name in names:
        tiers["hot"].store(name, io.BytesIO(name.encode() * 100))
        store.learn(name, "hovedstaden/S1", "raw", 100, START)
        Mover(store, tiers, clock).move(name, "cold")
    return store, cold


def states(recaller: Recaller, request_id: str) -> tuple[str, list[str]]:
    state, files = recaller.status(request_id)
    return state, [f.state for f in files]


def test_a_request_goes_through_the_wlcg_states_limited_to_the_drives(tmp_path: Path) -> None:
    clock = Clock()
    names = [f"hovedstaden/S1/{n}.c4gh" for n in "abc"]
    store, cold = archive(tmp_path, clock, names)
    recaller = Recaller(store, cold, POLICY, clock)
    assert recaller.request("r1", "operator", names)
    assert not recaller.request("r1", "operator", names)  # the same request again: nothing new
    assert states(recaller, "r1") == ("SUBMITTED", ["SUBMITTED"] * 3)

    assert recaller.tick() == []
    assert states(recaller, "r1") == ("STARTED", ["STARTED", "STARTED", "SUBMITTED"])  # two drives
    clock.now += timedelta(seconds=600)
    staged = recaller.tick()
    assert [s.path for s in staged] == names[:2]
    assert staged[0].pinned_until == clock.now + timedelta(hours=72)
    assert states(recaller, "r1") == ("STARTED", ["COMPLETED", "COMPLETED", "STARTED"])

    restarted = Recaller(PlacementStore(store.url), cold, POLICY, clock)  # a restart mid-recall
    clock.now += timedelta(seconds=600)
    assert [s.path for s in restarted.tick()] == names[2:]
    assert states(restarted, "r1") == ("COMPLETED", ["COMPLETED"] * 3)
    assert restarted.tick() == []  # each file is staged once for its request


def test_one_file_asked_for_by_two_requests_takes_one_drive(tmp_path: Path) -> None:
    clock = Clock()
    names = ["hovedstaden/S1/a.c4gh", "hovedstaden/S1/b.c4gh"]
    store, cold = archive(tmp_path, clock, names)
    recaller = Recaller(store, cold, RecallPolicy(drives=1, pin=timedelta(hours=1)), clock)
    recaller.request("r1", "access", names[:1])
    recaller.request("r2", "harmoniser", names[:1])
    recaller.request("r3", "operator", names[1:])
    recaller.tick()
    assert [states(recaller, r)[0] for r in ("r1", "r2", "r3")] == ["STARTED", "STARTED", "SUBMITTED"]
    clock.now += timedelta(seconds=600)
    assert sorted(s.request_id for s in recaller.tick()) == ["r1", "r2"]


def test_a_refused_recall_is_retried_with_backoff_then_failed_with_its_reason(tmp_path: Path) -> None:
    clock = Clock()
    store, cold = archive(tmp_path, clock, ["hovedstaden/S1/a.c4gh"])
    cold.refusals = 10
    recaller = Recaller(store, cold, POLICY, clock)
    recaller.request("r1", "operator", ["hovedstaden/S1/a.c4gh"])
    waits = []
    for _ in range(3):
        recaller.tick()
        [file] = store.recall_files("r1")
        waits.append(file.not_before - clock.now)
        clock.now = file.not_before
    assert waits[:2] == [timedelta(minutes=5), timedelta(minutes=10)]
    state, [file] = recaller.status("r1")
    assert (state, file.attempts) == ("FAILED", 3)
    assert file.reason == "cold: the gateway refused the recall: 503 SlowDown"


def test_a_gateway_that_recovers_stages_the_file_after_its_backoff(tmp_path: Path) -> None:
    clock = Clock()
    store, cold = archive(tmp_path, clock, ["hovedstaden/S1/a.c4gh"])
    cold.refusals = 1
    recaller = Recaller(store, cold, POLICY, clock)
    recaller.request("r1", "operator", ["hovedstaden/S1/a.c4gh"])
    recaller.tick()
    clock.now += timedelta(minutes=4)
    assert recaller.tick() == [] and states(recaller, "r1")[0] == "SUBMITTED"  # still backing off
    clock.now += timedelta(minutes=1)
    recaller.tick()
    clock.now += timedelta(seconds=600)
    assert len(recaller.tick()) == 1 and states(recaller, "r1")[0] == "COMPLETED"


def test_a_file_on_a_readable_tier_completes_at_once_and_a_request_can_be_cancelled(tmp_path: Path) -> None:
    clock = Clock()
    store, cold = archive(tmp_path, clock, ["hovedstaden/S1/a.c4gh"])
    FolderTier("hot", (tmp_path / "hot").as_uri()).store("hovedstaden/S1/hot.c4gh", io.BytesIO(b"x"))
    store.learn("hovedstaden/S1/hot.c4gh", "hovedstaden/S1", "raw", 1, START)
    recaller = Recaller(store, cold, POLICY, clock)
    recaller.request("r1", "access", ["hovedstaden/S1/hot.c4gh"])
    assert [(s.tier, s.path) for s in recaller.tick()] == [("hot", "hovedstaden/S1/hot.c4gh")]
    recaller.request("r2", "operator", ["hovedstaden/S1/a.c4gh"])
    recaller.tick()
    assert recaller.cancel("r2") == 1 and states(recaller, "r2") == ("CANCELLED", ["CANCELLED"])
    with pytest.raises(ValueError, match="no archived body at hovedstaden/S1/none"):
        recaller.request("r3", "operator", ["hovedstaden/S1/none"])


def test_a_request_state_follows_its_files() -> None:
    assert request_state(["COMPLETED", "FAILED"]) == "FAILED"
    assert request_state(["COMPLETED", "CANCELLED"]) == "COMPLETED"
    assert request_state(["SUBMITTED", "COMPLETED"]) == "STARTED"


class Killed(BaseException):
    """What SIGKILL is to the round: nothing after it runs."""


def test_a_round_killed_after_the_gateway_took_the_recall_does_not_recall_twice(tmp_path: Path) -> None:
    clock = Clock()
    store, cold = archive(tmp_path, clock, ["hovedstaden/S1/a.c4gh"])
    asked: list[float] = []

    class Dying(Gateway):
        def recall(self, path: str, pin_seconds: float) -> Residence:
            answer = super().recall(path, pin_seconds)
            asked.append(self._read_ticket(path).requested)  # type: ignore[union-attr]
            raise Killed("after the gateway took it, before STARTED was recorded")
            return answer

    dying = Dying((tmp_path / "cold").as_uri(), delay=600, drives=2, clock=clock.seconds)
    Recaller(store, dying, POLICY, clock).request("r1", "operator", ["hovedstaden/S1/a.c4gh"])
    with pytest.raises(Killed):
        Recaller(store, dying, POLICY, clock).tick()
    clock.now += timedelta(seconds=60)
    restarted = Recaller(PlacementStore(store.url), cold, POLICY, clock)
    restarted.tick()
    assert cold._read_ticket("hovedstaden/S1/a.c4gh").requested == asked[0]  # type: ignore[union-attr]
    clock.now += timedelta(seconds=540)  # the first recall's 600 s, not a second one's
    assert [s.path for s in restarted.tick()] == ["hovedstaden/S1/a.c4gh"]
    assert restarted.status("r1")[1][0].attempts == 1


def test_a_recall_of_a_body_the_archive_does_not_hold_is_refused_whole(tmp_path: Path) -> None:
    """What ``recall-requested`` from a careless or compromised sender may name: a path the
    archive never held (beside one it does), or no path at all. Refused before any change,
    so the service dead-letters it as ``unknown_body`` and nothing of it is recalled."""
    clock = Clock()
    known = "hovedstaden/S1/a.c4gh"
    store, cold = archive(tmp_path, clock, [known])
    recaller = Recaller(store, cold, POLICY, clock)
    with pytest.raises(ValueError, match=r"\.\./\.\./etc/passwd"):
        recaller.request("r1", "access", [known, "../../etc/passwd"])
    with pytest.raises(ValueError, match="none given"):
        recaller.request("r2", "access", [])
    assert recaller.status("r1")[1] == [] and recaller.status("r2")[1] == []
    assert store.recall_files(states=("SUBMITTED",)) == []
