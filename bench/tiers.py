"""Simulation of a national reanalysis campaign: every sample's raw reads recalled from tape.

``--samples`` samples (default 60,000: NGC holds over 60,000 genomes), each with a FASTQ pair
of seeded random size around ``--gb-per-sample`` GB, were written to ``--tapes`` tapes as they
arrived (``--open-tapes`` tapes filled at once, so a sample's two files may lie on two
tapes). ``--drives`` drives read at ``--rate`` MB/s; a mount costs ``--mount`` seconds (robot,
load, thread), a locate between files that do not follow each other on a tape ``--locate``
seconds.

Two orders are simulated in the same run, on the same tapes:

- baseline: recalls in sample order, as requests come (each drive takes the next file; a file
  on a tape another drive holds waits for it, one on an unmounted tape costs a mount);
- planned: ``services.archive.campaign.plan``, tape by tape, each mounted once, files in
  tape order, tapes dealt longest first.

Printed: the length of each (days), its mounts, and its ratio to the physical bound (total
bytes / (drives x rate) plus one mount per tape, shared by the drives). A pure simulation:
no tape is read; the figures are the model's, not this machine's.

Then, on this machine, ``--moves`` files (default 10,000, ``--move-kb`` each, four to a
sample folder as intake lays them out) moved hot to warm by the archive's own
``services.archive.moves.Mover`` (copy, read the copy back and hash it against the source's
sha256, record the move in the placement store, remove the source), against ``cp -r`` plus
``sha256sum`` of the copies, and ``cp -r`` plus ``sync`` plus ``sha256sum`` (a move is
durable before its source goes: the fair baseline), in the same run, both from a warm page
cache. ``--moves 0`` skips it.

    .venv/bin/python bench/tiers.py [--samples 60000] [--tapes 400] [--drives 8] [--moves 10000]
"""

from __future__ import annotations

import argparse
import heapq
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from services.archive.campaign import OnTape, TapeVisit, physical_bound, plan  # noqa: E402
from services.archive.moves import Mover  # noqa: E402
from services.archive.placement import PlacementStore  # noqa: E402
from shared.tiers import FolderColdTier, FolderTier, Tier, TierName  # noqa: E402

DAY = 86400.0


def archive(samples: int, tapes: int, open_tapes: int, gb: float, seed: int) -> list[OnTape]:
    """The bodies as they were written: in arrival order, spread over the tapes being filled."""
    rng = random.Random(seed)
    files: list[tuple[str, int]] = []
    for s in range(samples):
        size = int(rng.lognormvariate(0, 0.25) * gb * 1e9 / 2)
        files += [(f"region/S{s}/R1.fastq.gz.c4gh", size), (f"region/S{s}/R2.fastq.gz.c4gh", size)]
    capacity = sum(size for _, size in files) / tapes * 1.0001
    placed: list[OnTape] = []
    filling = list(range(open_tapes))
    used: defaultdict[int, int] = defaultdict(int)
    position: defaultdict[int, int] = defaultdict(int)
    next_tape = open_tapes
    for i, (path, size) in enumerate(files):
        slot = i % len(filling)
        tape = filling[slot]
        if used[tape] + size > capacity and next_tape < tapes:
            tape = filling[slot] = next_tape
            next_tape += 1
        used[tape] += size
        position[tape] += 1
        placed.append(OnTape(path, f"T{tape:04d}", position[tape], size))
    return placed


def baseline(files: list[OnTape], drives: int, rate: float, mount: float, locate: float) -> tuple[float, int]:
    """Sample order: each file to the drive free first; its tape mounted there unless that
    drive holds it already (a tape another drive holds is taken over: unmount, mount)."""
    free = [(0.0, d) for d in range(drives)]
    holding: dict[int, tuple[str, int]] = {}
    mounts = 0
    end = 0.0
    for file in files:
        at, drive = heapq.heappop(free)
        tape, last = holding.get(drive, ("", -1))
        cost = file.size / rate
        if tape != file.tape:
            mounts += 1
            cost += mount + locate
        elif file.position != last + 1:
            cost += locate
        holding[drive] = (file.tape, file.position)
        end = max(end, at + cost)
        heapq.heappush(free, (at + cost, drive))
    return end, mounts


def planned(schedule: list[list[TapeVisit]], rate: float, mount: float, locate: float) -> tuple[float, int]:
    """The plan's length: each drive's mounts, locates between files not adjacent, reads."""
    end, mounts = 0.0, 0
    for visits in schedule:
        t = 0.0
        for visit in visits:
            mounts += 1
            t += mount
            last = -1
            for f in visit.files:
                t += (locate if f.position != last + 1 else 0.0) + f.size / rate
                last = f.position
        end = max(end, t)
    return end, mounts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--tapes", type=int, default=400, help="LTO-9 (18 TB) tapes holding the raw reads")
    parser.add_argument("--open-tapes", type=int, default=4, help="tapes written at once")
    parser.add_argument("--drives", type=int, default=8)
    parser.add_argument("--rate", type=float, default=300.0, help="MB/s a drive reads")
    parser.add_argument("--mount", type=float, default=120.0, help="seconds a mount takes")
    parser.add_argument("--locate", type=float, default=40.0, help="seconds a locate takes")
    parser.add_argument("--gb-per-sample", type=float, default=110.0)
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--moves", type=int, default=10_000, help="files moved hot to warm here (0: none)")
    parser.add_argument("--move-kb", type=int, default=100, help="size of each moved file, KB")
    args = parser.parse_args()
    rate = args.rate * 1e6

    files = archive(args.samples, args.tapes, args.open_tapes, args.gb_per_sample, args.seed)
    bound = physical_bound(files, args.drives, args.mount, rate)
    total = sum(f.size for f in files)
    tapes = len({f.tape for f in files})
    print(
        f"{args.samples} samples, {len(files)} files, {total / 1e15:.2f} PB on {tapes} tapes; "
        f"{args.drives} drives at {args.rate:.0f} MB/s, mount {args.mount:.0f} s, locate {args.locate:.0f} s"
    )
    print(f"physical bound: {bound / DAY:.1f} days (bytes / (drives x rate) + one mount per tape)")

    base_len, base_mounts = baseline(files, args.drives, rate, args.mount, args.locate)
    print(
        f"baseline (sample order): {base_len / DAY:8.1f} days, {base_mounts:7d} mounts "
        f"({base_mounts / tapes:.1f} a tape), x{base_len / bound:.2f} the bound"
    )
    started = time.perf_counter()
    schedule = plan(files, args.drives, args.mount, rate)
    took = time.perf_counter() - started
    plan_len, plan_mounts = planned(schedule, rate, args.mount, args.locate)
    print(
        f"planned (tape by tape):  {plan_len / DAY:8.1f} days, {plan_mounts:7d} mounts "
        f"({plan_mounts / tapes:.1f} a tape), x{plan_len / bound:.3f} the bound "
        f"(planned in {took:.2f} s)"
    )
    if args.moves:
        move_bench(args.moves, args.move_kb * 1000)


def shell(command: str) -> float:
    """Wall seconds of a shell line (its output discarded)."""
    started = time.perf_counter()
    subprocess.run(["bash", "-c", command], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def move_bench(count: int, size: int) -> None:
    """``count`` files of ``size`` bytes moved hot to warm by the Mover, against cp + sha256sum."""
    work = Path(tempfile.mkdtemp(prefix="genomhub-bench-tiers-", dir=Path.home()))
    try:
        hot, warm, cold = work / "hot", work / "warm", work / "cold"
        paths = [
            f"hovedstaden/S{i // 4:05d}/sub-{i // 4:05d}/part{i % 4}.fastq.gz.c4gh" for i in range(count)
        ]
        rng = random.Random(7)
        block = rng.randbytes(size + 4096)
        for i, path in enumerate(paths):
            target = hot / path
            target.parent.mkdir(parents=True, exist_ok=True)
            offset = i % 4096
            target.write_bytes(block[offset : offset + size])  # no two files alike
        shell(f"sync; find {hot} -type f -exec cat {{}} + > /dev/null")  # the sources in the page cache
        mb = count * size / 1e6

        copy = work / "copy"
        cp_s = shell(f"cp -r {hot} {copy} && find {copy} -type f -print0 | xargs -0 sha256sum")
        shutil.rmtree(copy)
        shell("sync")
        durable_s = shell(f"cp -r {hot} {copy} && sync && find {copy} -type f -print0 | xargs -0 sha256sum")
        shutil.rmtree(copy)
        shell("sync")

        store = PlacementStore(f"sqlite:///{work / 'archive.sqlite'}")
        now = datetime.now(UTC)
        for path in paths:
            store.learn(path, path.split("/")[1], "raw", size, now)
        tiers: dict[TierName, Tier] = {
            "hot": FolderTier("hot", hot.as_uri()),
            "warm": FolderTier("warm", warm.as_uri()),
            "cold": FolderColdTier(cold.as_uri(), delay=0, drives=1),
        }
        mover = Mover(store, tiers, lambda: datetime.now(UTC))
        started = time.perf_counter()
        moves = [mover.move(path, "warm") for path in paths]
        move_s = time.perf_counter() - started
        store.dispose()
        done = sum(1 for m in moves if m.state == "done")
        left = sum(1 for _ in hot.rglob("*") if _.is_file())
        moved = sum(1 for _ in warm.rglob("*") if _.is_file())

        print()
        print(
            f"{count} files of {size / 1000:.0f} KB ({mb:.0f} MB) moved hot -> warm here, {os.cpu_count()} cores:"
        )
        print(f"cp -r + sha256sum:          {cp_s:7.2f} s  {count / cp_s:6.0f} files/s   baseline")
        print(
            f"cp -r + sync + sha256sum:   {durable_s:7.2f} s  {count / durable_s:6.0f} files/s   durable baseline"
        )
        print(
            f"archive mover:              {move_s:7.2f} s  {count / move_s:6.0f} files/s   "
            f"{cp_s / move_s:.2f} x cp + sha256sum, {durable_s / move_s:.2f} x the durable one"
        )
        print(f"moves done: {done} of {count}; left on hot: {left}; on warm: {moved}")
        print(
            "the mover also does per file: an fdatasync before the rename, the copy read back from "
            "disk (not the cache) and hashed, and three transactions in the placement store"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
