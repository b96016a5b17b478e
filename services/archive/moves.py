"""Files cool down the tiers: the lifecycle policy says which are due, a move takes one there.

A move is a tracked job of three steps, each recorded before the next begins: copy the body
to the target tier and verify it there (the digest of the bytes the tier holds against the
digest recorded at the body's first move, or against the bytes read from the source on that
first move); record the target as the body's tier (with the move's step, in one
transaction); remove the source copy. Killed anywhere, the body is readable on the tier its
row names, and the open move says what else may exist: :meth:`Mover.resume` throws away an
unrecorded copy and copies again, or finishes removing a recorded move's source.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta

from shared.config import FileKind
from shared.tiers import TIERS, Tier, TierError, TierName

from .placement import ArchivedFile, Move, PlacementStore

Checkpoint = Callable[[str, Move], None]
"""Called after each step (``copied``, ``recorded``, ``removed``): where tests kill a move."""


def due_moves(
    files: Iterable[ArchivedFile], lifecycle: Mapping[FileKind, tuple[int, int]], now: datetime
) -> list[tuple[str, TierName]]:
    """Each file the policy sends down, and where: cold once it has gone ``cold`` days
    without access (straight from hot, if it never went to warm in time), warm after ``warm``
    days. A file of a kind the policy does not name stays where it is."""
    due: list[tuple[str, TierName]] = []
    for file in files:
        if file.kind not in lifecycle or file.tier == "cold":
            continue
        warm_after, cold_after = lifecycle[file.kind]
        idle = now - file.last_access
        if idle >= timedelta(days=cold_after):
            due.append((file.path, "cold"))
        elif file.tier == "hot" and idle >= timedelta(days=warm_after):
            due.append((file.path, "warm"))
    return due


def _nothing(_step: str, _move: Move) -> None:
    return None


class Mover:
    """Runs moves against the tiers and records each step in the placement store."""

    def __init__(
        self,
        store: PlacementStore,
        tiers: Mapping[TierName, Tier],
        clock: Callable[[], datetime],
        checkpoint: Checkpoint = _nothing,
    ) -> None:
        missing = [name for name in TIERS if name not in tiers]
        if missing:
            raise ValueError(f"no tier named {', '.join(missing)}")
        self.store, self.tiers, self.clock, self.checkpoint = store, tiers, clock, checkpoint

    def move(self, path: str, target: TierName) -> Move:
        """Take the body at ``path`` to ``target``: the finished (or failed) move."""
        return self.run(self.store.start_move(path, target, self.clock()))

    def cool(self, lifecycle: Mapping[FileKind, tuple[int, int]]) -> list[Move]:
        """Every move the policy says is due, one after the other."""
        due = due_moves(self.store.every_file(), lifecycle, self.clock())
        return [self.move(path, target) for path, target in due]

    def resume(self) -> list[Move]:
        """Finish every move a crash left open."""
        return [self.run(move) for move in self.store.open_moves()]

    def run(self, move: Move) -> Move:
        if move.state == "copying":
            move = self._copy(move)
        if move.state == "removing":
            self.tiers[move.source].remove(move.path)
            self.checkpoint("removed", move)
            self.store.finish(move, "done", self.clock())
        return self.store.move(move.id)

    def _copy(self, move: Move) -> Move:
        source, target = self.tiers[move.source], self.tiers[move.target]
        file = self.store.file(move.path)
        assert file is not None and file.tier == move.source  # a copying move's body is still on its source
        target.discard_partial(move.path)
        if target.exists(move.path):  # a whole copy an interrupted run never recorded: not trusted
            target.remove(move.path)
        with contextlib.closing(source.open(move.path)) as stream:
            stored = target.store(move.path, stream)
        self.checkpoint("copied", move)
        if file.sha256 is not None and stored.sha256 != file.sha256:
            target.remove(move.path)
            reason = f"the copy on {move.target} has sha256 {stored.sha256}, the body {file.sha256}"
            self.store.finish(move, "failed", self.clock(), reason)
            raise TierError(f"{move.path}: {reason}")
        self.store.moved(move, stored.sha256, self.clock())
        moved = self.store.move(move.id)
        self.checkpoint("recorded", moved)
        return moved
