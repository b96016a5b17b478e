"""Reanalysis campaigns: every harmonised submission run again with a new Sarek release.

The raw reads of a national database lie mostly on tape, so a campaign is a recall as much
as a computation. When it is planned it takes every submission the archive saw harmonised,
puts them in the order that reads each tape (or cold prefix) once (:func:`campaign.plan`),
and then, round by round: asks the recaller for the next submissions' raw bodies while the
bytes held for the campaign stay within its budget (from a submission's recall until its
rerun is harmonised), asks the harmoniser for the rerun of each submission whose bodies are
all staged (``reharmonisation-requested``), and counts the harmonised reruns off. A paused
campaign starts no recalls; everything is in the archive's database, so a restarted service
goes on where it was, and a run's recall id is derived from the campaign and the submission,
so nothing is recalled twice for one run.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import RowMapping

from services.archive.campaign import OnTape, plan
from services.archive.placement import PlacementStore, campaign_runs, campaigns, files
from services.archive.recalls import COMPLETED, FAILED, UNDER_WAY, Recaller
from shared.identifiers import minted_free_of_cpr

CampaignState = Literal["running", "paused", "done"]
RunState = Literal["planned", "recalling", "staged", "requested", "harmonised", "failed"]
HOLDING: tuple[RunState, ...] = ("recalling", "staged", "requested")
"""A run in these states holds its raw reads on a readable tier, within the budget."""
OPEN: tuple[RunState, ...] = ("planned", *HOLDING)


@dataclass(frozen=True)
class Campaign:
    id: str
    sarek_version: str
    budget: int
    state: CampaignState
    created_at: datetime
    updated_at: datetime

    @staticmethod
    def of(row: RowMapping) -> Campaign:
        return Campaign(**dict(row))


@dataclass(frozen=True)
class Run:
    """One submission's rerun within a campaign."""

    campaign_id: str
    submission_id: str
    sample: str
    position: int
    tape: str
    size: int
    paths: tuple[str, ...]
    state: RunState
    reason: str | None
    updated_at: datetime

    @property
    def recall_id(self) -> str:
        return recall_id_of(self.campaign_id, self.submission_id)

    @staticmethod
    def of(row: RowMapping) -> Run:
        values = dict(row)
        values["paths"] = tuple(values["paths"].splitlines())
        return Run(**values)


@dataclass(frozen=True)
class Progress:
    """Where a campaign is: runs per state, bytes rerun of the total, and when it should end
    at the pace it has gone so far (None until a first rerun is harmonised)."""

    campaign: Campaign
    runs: dict[RunState, int]
    total_bytes: int
    done_bytes: int
    held_bytes: int
    eta: datetime | None


def recall_id_of(campaign_id: str, submission_id: str) -> str:
    """The recall of one run's bodies: the same id every round, so a restart recalls nothing twice."""
    return hashlib.sha256(f"campaign|{campaign_id}|{submission_id}".encode()).hexdigest()[:32]


def cold_prefix(path: str) -> str:
    """What stands for a tape where the gateway names none: the body's folder (what was
    written together is read together)."""
    return path.rsplit("/", 1)[0]


class Campaigns:
    """The campaigns in the archive's database; synchronous, called through ``asyncio.to_thread``."""

    def __init__(self, store: PlacementStore, recaller: Recaller, clock: Callable[[], datetime]) -> None:
        self.store, self.recaller, self.clock = store, recaller, clock

    # -- planning ----------------------------------------------------------------------------

    def plan(self, sarek_version: str, budget: int, drives: int, mount_seconds: float, rate: float) -> Campaign:
        """A new campaign of every submission the archive saw harmonised (its raw bodies
        known) that no earlier campaign reran with ``sarek_version``, in tape order."""
        if budget < 1:
            raise ValueError("a campaign's budget must hold at least one byte")
        with self.store.reading() as conn:
            bodies = conn.execute(
                select(files.c.path, files.c.sample, files.c.kind, files.c.size, files.c.submission_id).where(
                    files.c.submission_id.is_not(None)
                )
            ).all()
            done = set(
                conn.execute(
                    select(campaign_runs.c.submission_id)
                    .join(campaigns, campaigns.c.id == campaign_runs.c.campaign_id)
                    .where(campaigns.c.sarek_version == sarek_version, campaign_runs.c.state == "harmonised")
                ).scalars()
            )
        harmonised = {b.submission_id for b in bodies if b.kind == "harmonised"}
        raw: dict[str, list[tuple[str, str, int]]] = {}
        for body in sorted(bodies, key=lambda b: b.path):
            if body.kind == "raw" and body.submission_id in harmonised and body.submission_id not in done:
                raw.setdefault(body.submission_id, []).append((body.path, body.sample, body.size))
        order = _tape_order(raw, self._tier_of, drives, mount_seconds, rate)
        now = self.clock()
        campaign_id = minted_free_of_cpr(lambda _: uuid.uuid4().hex)
        with self.store.writing() as conn:
            conn.execute(
                insert(campaigns).values(
                    id=campaign_id,
                    sarek_version=sarek_version,
                    budget=budget,
                    state="running",
                    created_at=now,
                    updated_at=now,
                )
            )
            for position, (submission_id, tape) in enumerate(order):
                held = raw[submission_id]
                conn.execute(
                    insert(campaign_runs).values(
                        campaign_id=campaign_id,
                        submission_id=submission_id,
                        sample=held[0][1],
                        position=position,
                        tape=tape,
                        size=sum(size for _, _, size in held),
                        paths="\n".join(path for path, _, _ in held),
                        state="planned",
                        updated_at=now,
                    )
                )
        campaign = self.campaign(campaign_id)
        assert campaign is not None
        return campaign

    def _tier_of(self, path: str) -> str:
        placed = self.store.file(path)
        return placed.tier if placed is not None else "hot"

    # -- reading -----------------------------------------------------------------------------

    def campaign(self, campaign_id: str) -> Campaign | None:
        with self.store.reading() as conn:
            row = conn.execute(select(campaigns).where(campaigns.c.id == campaign_id)).mappings().first()
        return Campaign.of(row) if row else None

    def every_campaign(self) -> list[Campaign]:
        with self.store.reading() as conn:
            rows = conn.execute(select(campaigns).order_by(campaigns.c.created_at)).mappings().all()
        return [Campaign.of(r) for r in rows]

    def runs(self, campaign_id: str | None = None, states: tuple[RunState, ...] = ()) -> list[Run]:
        query = select(campaign_runs).order_by(campaign_runs.c.campaign_id, campaign_runs.c.position)
        if campaign_id is not None:
            query = query.where(campaign_runs.c.campaign_id == campaign_id)
        if states:
            query = query.where(campaign_runs.c.state.in_(states))
        with self.store.reading() as conn:
            return [Run.of(r) for r in conn.execute(query).mappings().all()]

    def progress(self, campaign_id: str) -> Progress:
        campaign = self.campaign(campaign_id)
        if campaign is None:
            raise KeyError(campaign_id)
        with self.store.reading() as conn:
            rows = conn.execute(
                select(campaign_runs.c.state, func.count(), func.sum(campaign_runs.c.size))
                .where(campaign_runs.c.campaign_id == campaign_id)
                .group_by(campaign_runs.c.state)
            ).all()
        counts: dict[RunState, int] = dict.fromkeys(("planned", *HOLDING, "harmonised", "failed"), 0)
        sizes: dict[str, int] = {}
        for state, count, size in rows:
            counts[state] = count
            sizes[state] = int(size or 0)
        total = sum(sizes.values())
        done = sizes.get("harmonised", 0) + sizes.get("failed", 0)
        eta = None
        elapsed = (self.clock() - campaign.created_at).total_seconds()
        if campaign.state == "done":
            eta = campaign.updated_at
        elif sizes.get("harmonised", 0) > 0 and elapsed > 0:
            eta = self.clock() + timedelta(seconds=(total - done) * elapsed / done)
        return Progress(campaign, counts, total, done, sum(sizes.get(s, 0) for s in HOLDING), eta)

    # -- the rounds ----------------------------------------------------------------------------

    def pause(self, campaign_id: str) -> bool:
        """Start no more recalls (what is under way finishes); False unless it was running."""
        return self._set_state(campaign_id, "running", "paused")

    def resume(self, campaign_id: str) -> bool:
        return self._set_state(campaign_id, "paused", "running")

    def _set_state(self, campaign_id: str, expected: CampaignState, state: CampaignState) -> bool:
        with self.store.writing() as conn:
            changed = conn.execute(
                update(campaigns)
                .where(campaigns.c.id == campaign_id, campaigns.c.state == expected)
                .values(state=state, updated_at=self.clock())
            ).rowcount
        return bool(changed)

    def advance(self) -> None:
        """One round of every campaign not done: recalls that ended move their runs on, and a
        running campaign recalls its next runs in tape order while its budget has room (the
        first one always, however large, so that no run is too big ever to start)."""
        for campaign in self.every_campaign():
            if campaign.state == "done":
                continue
            for run in self.runs(campaign.id, ("recalling",)):
                self._look_at_recall(run)
            if campaign.state == "running":
                self._fill(campaign)
            if not self.runs(campaign.id, OPEN):
                self._set_state(campaign.id, campaign.state, "done")

    def _look_at_recall(self, run: Run) -> None:
        state, recalled = self.recaller.status(run.recall_id)
        if state == COMPLETED:
            self._move(run, ("recalling",), "staged")
        elif state not in UNDER_WAY:
            reasons = sorted({f.reason for f in recalled if f.state == FAILED and f.reason})
            self._move(run, ("recalling",), "failed", f"recall {state.lower()}: {'; '.join(reasons) or state}")

    def _fill(self, campaign: Campaign) -> None:
        held = sum(r.size for r in self.runs(campaign.id, HOLDING))
        for run in self.runs(campaign.id, ("planned",)):
            if held and held + run.size > campaign.budget:
                return
            self.recaller.request(run.recall_id, f"campaign {campaign.id}", list(run.paths))
            self._move(run, ("planned",), "recalling")
            held += run.size

    def staged(self) -> list[Run]:
        """Runs whose bodies are all readable and whose rerun is still to be asked for."""
        return self.runs(states=("staged",))

    def requested(self, run: Run) -> bool:
        """The broker acknowledged the run's ``reharmonisation-requested``."""
        return self._move(run, ("staged",), "requested")

    def harmonised(self, campaign_id: str, submission_id: str, succeeded: bool) -> bool:
        """The harmoniser reported a campaign's rerun: it leaves the budget (a replay: False)."""
        with self.store.reading() as conn:
            row = (
                conn.execute(
                    select(campaign_runs).where(
                        campaign_runs.c.campaign_id == campaign_id,
                        campaign_runs.c.submission_id == submission_id,
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            return False
        run = Run.of(row)
        if succeeded:
            return self._move(run, HOLDING, "harmonised")
        return self._move(run, HOLDING, "failed", "the rerun failed; its harmonised event has the log")

    def _move(self, run: Run, expected: tuple[RunState, ...], state: RunState, reason: str | None = None) -> bool:
        with self.store.writing() as conn:
            changed = conn.execute(
                update(campaign_runs)
                .where(
                    campaign_runs.c.campaign_id == run.campaign_id,
                    campaign_runs.c.submission_id == run.submission_id,
                    campaign_runs.c.state.in_(expected),
                )
                .values(state=state, reason=reason, updated_at=self.clock())
            ).rowcount
        return bool(changed)


def _tape_order(
    raw: dict[str, list[tuple[str, str, int]]],
    tier_of: Callable[[str], str],
    drives: int,
    mount_seconds: float,
    rate: float,
) -> list[tuple[str, str]]:
    """(submission, tape) in the order the campaign recalls them: the readable ones first
    (no mount), then tape by tape as :func:`campaign.plan` deals the tapes to the drives,
    ordered by when each visit starts; a submission goes with its first body's tape."""
    readable: list[tuple[str, str]] = []
    on_tape: list[OnTape] = []
    owner: dict[str, str] = {}
    for submission_id, held in sorted(raw.items()):
        cold = [(path, size) for path, _, size in held if tier_of(path) == "cold"]
        if not cold:
            readable.append((submission_id, ""))
            continue
        for position, (path, size) in enumerate(cold):
            on_tape.append(OnTape(path, cold_prefix(path), position, size))
            owner[path] = submission_id
    visits: list[tuple[float, int, str, list[str]]] = []
    for drive, schedule in enumerate(plan(on_tape, drives, mount_seconds, rate) if on_tape else []):
        at = 0.0
        for visit in schedule:
            visits.append((at, drive, visit.tape, [f.path for f in visit.files]))
            at += mount_seconds + visit.size / rate
    order = list(readable)
    seen = {s for s, _ in readable}
    for _, _, tape, paths in sorted(visits):
        for path in paths:
            if owner[path] not in seen:
                seen.add(owner[path])
                order.append((owner[path], tape))
    return order
