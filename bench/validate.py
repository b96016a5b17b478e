"""Benchmark of the validator's FASTQ path against seqkit and bare decompression.

Generates (once, into the cache outside git) a FASTQ.gz pair of about 1 GB and times, in
the same run: ``genomhub validate`` (all checks, R1 and R2 in parallel worker processes);
``seqkit stats -a``; bare decompression with python-isal (the decompressor the validator
uses), one file after the other and both at once; and ``gzip -dc``. Throughput is MB/s of
compressed input; peak RSS is the largest resident set of any process of the run. The
command's fixed start-up is timed on a 1-record pair, and the validator's throughput is
shown again without it. Each command runs ``--rounds`` times, in turn; the fastest counts.

    .venv/bin/python bench/validate.py [--size-mb 1000]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
from pathlib import Path

from isal import igzip

from shared.config import StateSettings
from shared.synthetic import contig_sequence

POOL = 20_000
READ_LENGTH = 150
BYTES_PER_RECORD = 111
"""Compressed bytes per simulated record at isal level 1 (measured), to size the pair."""


def generate(directory: Path, size_mb: int) -> tuple[Path, Path]:
    r1, r2 = directory / "bench_R1.fastq.gz", directory / "bench_R2.fastq.gz"
    if r1.exists() and r2.exists():
        return r1, r2
    directory.mkdir(parents=True, exist_ok=True)
    records = size_mb * 1_000_000 // 2 // BYTES_PER_RECORD
    rng = random.Random(11)
    reference = contig_sequence("chr1", 600_000)
    comp = str.maketrans("ACGT", "TGCA")
    starts = [rng.randrange(0, len(reference) - 500) for _ in range(POOL)]
    seqs1 = [reference[s : s + READ_LENGTH] for s in starts]
    seqs2 = [reference[s + 200 : s + 200 + READ_LENGTH].translate(comp)[::-1] for s in starts]
    quals = ["".join(rng.choices("FFFFFFFFF:,#", k=READ_LENGTH)) for _ in range(POOL)]
    for path, seqs, read in ((r1, seqs1, 1), (r2, seqs2, 2)):
        tmp = path.with_suffix(".tmp")
        with igzip.open(tmp, "wb", compresslevel=1) as out:  # type: ignore[no-untyped-call]
            batch = []
            for i in range(records):
                j = (i * 7919) % POOL
                batch.append(
                    f"@A00123:8:HBENCHXX:{1 + i % 4}:{1101 + i % 60}:{i % 32000}:{i} {read}:N:0:ACGTACGT\n"
                    f"{seqs[j]}\n+\n{quals[(j * 31 + i) % POOL]}\n"
                )
                if len(batch) == 20_000:
                    out.write("".join(batch).encode())
                    batch = []
            out.write("".join(batch).encode())
        tmp.rename(path)
    return r1, r2


def startup_pair(directory: Path, r1: Path, r2: Path) -> tuple[Path, Path]:
    """The first record of each mate: ``genomhub validate`` on it costs only its start-up."""
    pair = []
    for source, read in ((r1, 1), (r2, 2)):
        target = directory / f"startup_R{read}.fastq.gz"
        if not target.exists():
            with igzip.open(source, "rb") as handle:  # type: ignore[no-untyped-call]
                record = b"".join(handle.readline() for _ in range(4))
            target.write_bytes(igzip.compress(record))
        pair.append(target)
    return pair[0], pair[1]


def run(label: str, command: str) -> tuple[float, float]:
    """Wall time of ``command`` (a shell line) and the peak RSS (MB) of any of its processes."""
    wrapped = ["/usr/bin/time", "-f", "%M", "bash", "-c", command]
    started = time.perf_counter()
    done = subprocess.run(wrapped, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{label} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return wall, max(int(done.stderr.strip().splitlines()[-1]), 0) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1000, help="Compressed size of the pair.")
    parser.add_argument(
        "--rounds", type=int, default=3, help="Runs of each command, in turn; the fastest counts."
    )
    args = parser.parse_args()
    directory = StateSettings().cache / "bench" / f"validate-{args.size_mb}mb"
    r1, r2 = generate(directory, args.size_mb)
    s1, s2 = startup_pair(directory, r1, r2)
    megabytes = (r1.stat().st_size + r2.stat().st_size) / 1e6
    exe = Path(sys.executable)
    genomhub = exe.with_name("genomhub")
    print(f"input: {r1.name} + {r2.name}, {megabytes:.0f} MB compressed, in {directory}")
    files = f"{r1} {r2}"
    validator = "validator (genomhub validate)"
    startup = "validator start-up (1-record pair)"
    commands = {
        validator: f"{genomhub} validate --json {files} > /dev/null",
        "seqkit stats -a": f"seqkit stats -a {files} > /dev/null",
        "isal decompression, sequential": (
            f"{exe} -m isal.igzip -dc {r1} > /dev/null; {exe} -m isal.igzip -dc {r2} > /dev/null"
        ),
        "isal decompression, R1 and R2 at once": (
            f"{exe} -m isal.igzip -dc {r1} > /dev/null & {exe} -m isal.igzip -dc {r2} > /dev/null; wait"
        ),
        "gzip -dc": f"gzip -dc {files} > /dev/null",
        # The command's fixed start-up (importing every service's commands, forking the
        # workers) weighs on a 1 GB pair and vanishes on a genome's 50-100 GB: timed apart,
        # so that the checks' own throughput shows as well.
        startup: f"{genomhub} validate --json {s1} {s2} > /dev/null",
    }
    # The machine is shared: each command runs once per round, the rounds in turn, and the
    # fastest run of each counts, so that a burst of load elsewhere hits no one command.
    walls: dict[str, list[float]] = {label: [] for label in commands}
    peaks: dict[str, float] = dict.fromkeys(commands, 0.0)
    for _ in range(args.rounds):
        for label, command in commands.items():
            wall, peak = run(label, command)
            walls[label].append(wall)
            peaks[label] = max(peaks[label], peak)
    rates = {label: megabytes / min(walls[label]) for label in commands if label != startup}
    for label, rate in rates.items():
        runs = " ".join(f"{w:.2f}" for w in walls[label])
        print(
            f"{label:<38} {min(walls[label]):7.2f} s  {rate:8.1f} MB/s  "
            f"peak RSS {peaks[label]:7.1f} MB  (runs: {runs} s)"
        )
    print()
    for label in list(rates)[1:]:
        print(f"validator / {label:<38} {rates[validator] / rates[label]:5.2f}")
    fixed = min(walls[startup])
    checks = megabytes / (min(walls[validator]) - fixed)
    print(f"\n{startup}: {fixed:.2f} s; the validator without it: {checks:.1f} MB/s")
    for label in list(rates)[1:]:
        print(f"validator less start-up / {label:<38} {checks / rates[label]:5.2f}")


if __name__ == "__main__":
    main()
