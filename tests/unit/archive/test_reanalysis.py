"""A reanalysis campaign on the folder tiers with a fake clock: planned in tape order, recalled
within its budget and the drives, each staged run asked for once, paused and resumed, gone on
with after a restart, and its progress and ETA told."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest

from services.archive.moves import Mover
from services.archive.placement import PlacementStore
from services.archive.reanalysis import Campaigns, cold_prefix, recall_id_of
from services.archive.recalls import Recaller
from shared.tiers import FolderColdTier, FolderTier, Tier, TierName
from tests.unit.archive.test_recalls import POLICY, START, Clock

RAW = 1000  # bytes of each raw body; two a submission


class Archive:
    """The archive's store and tiers, with submissions learnt as the service learns them."""

    def __init__(self, tmp_path: Path, clock: Clock) -> None:
        self.tmp_path, self.clock = tmp_path, clock
        self.store = PlacementStore(f"sqlite:///{tmp_path / 'archive.sqlite'}")
        self.cold = FolderColdTier((tmp_path / "cold").as_uri(), delay=600, drives=2, clock=clock.seconds)
        self.tiers: dict[TierName, Tier] = {
            "hot": FolderTier("hot", (tmp_path / "hot").as_uri()),
            "warm": FolderTier("warm", (tmp_path / "warm").as_uri()),
            "cold": self.cold,
        }

    def submission(self, sample: str, submission_id: str, *, cold: bool, harmonised: bool = True) -> list[str]:
        """Two raw bodies (moved to tape if ``cold``) and, if ``harmonised``, one output."""
        raw = [f"hovedstaden/{sample}/{submission_id}/R{n}.fastq.gz.c4gh" for n in (1, 2)]
        for path in raw:
            self.tiers["hot"].store(path, io.BytesIO(b"r" * RAW))
            self.store.learn(path, f"hovedstaden/{sample}", "raw", RAW, START, submission_id)
            if cold:
                Mover(self.store, self.tiers, self.clock).move(path, "cold")
        if harmonised:
            out = f"harmonised/{submission_id}/{sample}.cram.c4gh"
            self.store.learn(out, f"hovedstaden/{sample}", "harmonised", 10, START, submission_id)
        return raw

    def campaigns(self) -> Campaigns:
        """What the service makes at start: a restart is a new one on the same database."""
        return Campaigns(self.store, Recaller(self.store, self.cold, POLICY, self.clock), self.clock)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def archive(tmp_path: Path, clock: Clock) -> Archive:
    return Archive(tmp_path, clock)


def round_of(campaigns: Campaigns) -> None:
    """One round of the archive service: the recalls, then the campaigns."""
    campaigns.recaller.tick()
    campaigns.advance()


def test_a_campaign_takes_the_harmonised_submissions_readable_ones_first_then_tape_by_tape(
    archive: Archive,
) -> None:
    archive.submission("S1", "sub-cold-a", cold=True)
    archive.submission("S2", "sub-hot", cold=False)
    archive.submission("S3", "sub-cold-b", cold=True)
    archive.submission("S4", "sub-never-harmonised", cold=False, harmonised=False)
    planned = archive.campaigns().plan("3.6.0", budget=10 * RAW, drives=2, mount_seconds=90, rate=4e8)
    runs = archive.campaigns().runs(planned.id)
    assert runs[0].submission_id == "sub-hot" and runs[0].tape == ""
    assert {r.submission_id for r in runs} == {"sub-hot", "sub-cold-a", "sub-cold-b"}, "no run of a rejected one"
    assert all(r.state == "planned" and r.size == 2 * RAW and len(r.paths) == 2 for r in runs)
    assert {r.tape for r in runs[1:]} == {cold_prefix(r.paths[0]) for r in runs[1:]}
    assert planned.sarek_version == "3.6.0" and planned.state == "running"


def test_recalls_stay_within_the_budget_and_each_staged_run_is_asked_for_once(
    archive: Archive, clock: Clock
) -> None:
    for n in range(4):
        archive.submission(f"S{n}", f"sub-{n}", cold=True)
    campaigns = archive.campaigns()
    planned = campaigns.plan("3.6.0", budget=4 * RAW, drives=2, mount_seconds=90, rate=4e8)

    round_of(campaigns)
    assert [r.state for r in campaigns.runs(planned.id)] == ["recalling"] * 2 + ["planned"] * 2, "4 kB: two runs"
    assert campaigns.staged() == []
    rounds = 0
    while len(campaigns.staged()) < 2:  # two drives for four bodies, 600 s a recall
        clock.now += timedelta(seconds=300)
        round_of(campaigns)
        rounds += 1
        assert rounds < 20, [r.state for r in campaigns.runs(planned.id)]
    assert [r.state for r in campaigns.runs(planned.id)][2:] == ["planned"] * 2
    staged = campaigns.staged()
    assert [r.submission_id for r in staged] == [r.submission_id for r in campaigns.runs(planned.id)[:2]]
    assert all(campaigns.requested(r) for r in staged)
    assert not any(campaigns.requested(r) for r in staged), "asked for once"
    assert campaigns.staged() == []
    assert [r.state for r in campaigns.runs(planned.id)][2:] == ["planned"] * 2, "the budget is still full"

    first = staged[0]
    assert campaigns.harmonised(planned.id, first.submission_id, succeeded=True)
    assert not campaigns.harmonised(planned.id, first.submission_id, succeeded=True), "a replay counts nothing"
    round_of(campaigns)
    assert [r.state for r in campaigns.runs(planned.id)] == ["harmonised", "requested", "recalling", "planned"]
    requests = campaigns.store.recall_requests()
    assert sorted(requests) == sorted(recall_id_of(planned.id, r.submission_id) for r in campaigns.runs(planned.id)[:3])


def test_one_run_larger_than_the_budget_still_starts_alone(archive: Archive) -> None:
    archive.submission("S1", "sub-1", cold=True)
    archive.submission("S2", "sub-2", cold=True)
    campaigns = archive.campaigns()
    planned = campaigns.plan("3.6.0", budget=RAW, drives=2, mount_seconds=90, rate=4e8)
    round_of(campaigns)
    assert [r.state for r in campaigns.runs(planned.id)] == ["recalling", "planned"]


def test_a_paused_campaign_starts_no_recall_and_a_restart_goes_on_where_it_was(
    archive: Archive, clock: Clock
) -> None:
    for n in range(3):
        archive.submission(f"S{n}", f"sub-{n}", cold=n != 0)
    campaigns = archive.campaigns()
    planned = campaigns.plan("3.6.0", budget=2 * RAW, drives=2, mount_seconds=90, rate=4e8)
    assert campaigns.pause(planned.id) and not campaigns.pause(planned.id)
    round_of(campaigns)
    assert {r.state for r in campaigns.runs(planned.id)} == {"planned"}
    assert campaigns.resume(planned.id)
    round_of(campaigns)
    round_of(campaigns)
    [hot] = campaigns.staged()  # its bodies were readable: staged at the round after its request
    assert campaigns.requested(hot) and campaigns.harmonised(planned.id, hot.submission_id, succeeded=True)

    restarted = archive.campaigns()  # the service killed and started again
    round_of(restarted)
    assert [r.state for r in restarted.runs(planned.id)] == ["harmonised", "recalling", "planned"]
    round_of(restarted)
    assert len(restarted.store.recall_requests()) == 2, "nothing recalled twice for one run"


def test_a_failed_rerun_or_recall_ends_its_run_and_the_campaign_ends_when_none_is_open(
    archive: Archive, clock: Clock
) -> None:
    archive.submission("S1", "sub-1", cold=False)
    archive.submission("S2", "sub-2", cold=False)
    campaigns = archive.campaigns()
    planned = campaigns.plan("3.6.0", budget=10 * RAW, drives=2, mount_seconds=90, rate=4e8)
    round_of(campaigns)
    round_of(campaigns)
    for run in campaigns.staged():
        campaigns.requested(run)
    clock.now += timedelta(hours=1)
    assert campaigns.harmonised(planned.id, "sub-1", succeeded=True)
    progress = campaigns.progress(planned.id)
    assert progress.done_bytes == 2 * RAW and progress.total_bytes == 4 * RAW and progress.held_bytes == 2 * RAW
    assert progress.eta == clock.now + timedelta(hours=1), "the other half at the pace of the first"
    assert campaigns.harmonised(planned.id, "sub-2", succeeded=False)
    round_of(campaigns)
    ended = campaigns.progress(planned.id)
    assert ended.campaign.state == "done" and ended.runs["harmonised"] == 1 and ended.runs["failed"] == 1
    assert campaigns.runs(planned.id)[1].reason is not None

    # a second campaign of the same release reruns only what the first did not
    again = campaigns.plan("3.6.0", budget=10 * RAW, drives=2, mount_seconds=90, rate=4e8)
    assert [r.submission_id for r in campaigns.runs(again.id)] == ["sub-2"]
