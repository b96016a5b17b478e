"""The order a reanalysis campaign recalls in: tape by tape, each tape mounted once.

The whole database cannot be read in days, so it must be read in the right order: a drive
that mounts a tape reads every requested file on it in the order they lie on the tape, then
gives the tape back; the tapes are dealt to the drives longest first, each to the drive
that frees up first, so the drives finish close together. Where a gateway names no tapes,
a cold prefix stands for one (what is written together is read together).
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class OnTape:
    """A requested body: the tape (or cold prefix) it lies on, its place there, its size."""

    path: str
    tape: str
    position: int
    size: int


@dataclass(frozen=True)
class TapeVisit:
    """One mount: a tape and the files read from it, in tape order."""

    tape: str
    files: tuple[OnTape, ...]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def plan(files: Iterable[OnTape], drives: int, mount_seconds: float, rate: float) -> list[list[TapeVisit]]:
    """Each drive's tapes, in the order it mounts them: one visit per tape, files in tape
    order, tapes dealt longest first to the drive that is free first (``rate`` bytes a
    second, ``mount_seconds`` a mount)."""
    if drives < 1:
        raise ValueError("a campaign needs at least one drive")
    by_tape: dict[str, list[OnTape]] = defaultdict(list)
    for file in files:
        by_tape[file.tape].append(file)
    visits = [
        TapeVisit(tape, tuple(sorted(held, key=lambda f: f.position))) for tape, held in by_tape.items()
    ]
    visits.sort(key=lambda v: (-v.size, v.tape))
    free: list[tuple[float, int]] = [(0.0, d) for d in range(drives)]
    schedule: list[list[TapeVisit]] = [[] for _ in range(drives)]
    for visit in visits:
        at, drive = heapq.heappop(free)
        schedule[drive].append(visit)
        heapq.heappush(free, (at + mount_seconds + visit.size / rate, drive))
    return schedule


def physical_bound(files: Iterable[OnTape], drives: int, mount_seconds: float, rate: float) -> float:
    """No campaign is shorter: every byte read at the drives' full rate, every tape mounted
    once, the work shared perfectly among the drives."""
    listed = list(files)
    tapes = len({f.tape for f in listed})
    return (sum(f.size for f in listed) / rate + tapes * mount_seconds) / drives
