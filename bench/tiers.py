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

    .venv/bin/python bench/tiers.py [--samples 60000] [--tapes 400] [--drives 8]
"""

from __future__ import annotations

import argparse
import heapq
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from services.archive.campaign import OnTape, TapeVisit, physical_bound, plan  # noqa: E402

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


if __name__ == "__main__":
    main()
