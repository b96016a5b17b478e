"""Benchmark of the validator's FASTQ path against seqkit and bare decompression.

Generates (once, into the cache outside git) a FASTQ.gz pair of about 1 GB and times, in
the same run: ``genomhub validate`` (all checks, R1 and R2 in parallel worker processes);
``seqkit stats -a``; bare decompression with python-isal (the decompressor the validator
uses), one file after the other and both at once; and ``gzip -dc``. Throughput is MB/s of
compressed input; peak RSS is the largest resident set of any process of the run. The
command's fixed start-up is timed on a 1-record pair, and the validator's throughput is
shown again without it. Each command runs ``--rounds`` times, in turn; the fastest counts.

Encryption at rest: the same pair is sealed once into an archive of the cache (Crypt4GH
bodies, headers apart, a bench-only key) and validated as the service validates archived
files, decrypted as they stream, beside the same validation of the plaintext through the
same harness (``--check``); their ratio is the cost of decryption.

    .venv/bin/python bench/validate.py [--size-mb 1000]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from isal import igzip

from shared.config import StateSettings, ValidatorSettings
from shared.encryption import load_archive_key, write_key_pair
from shared.events import AnalysisType, FileRole
from shared.headers import HeaderStore
from shared.storage import ArchiveReader, seal
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


BENCH_PASSPHRASE = "bench only: this key guards nothing"


def archive_of(directory: Path) -> ArchiveReader:
    keys = directory / "keys"
    if not (keys / "archive.sec").exists():
        write_key_pair(keys, BENCH_PASSPHRASE)
    key = load_archive_key(keys / "archive.sec", keys / "archive.pub", BENCH_PASSPHRASE)
    return ArchiveReader(HeaderStore((directory / "store").as_uri(), (directory / "headers").as_uri()), key)


def chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(4 << 20):
            yield chunk


def sealed(directory: Path, files: tuple[Path, ...]) -> list[tuple[str, int]]:
    """Each file archived encrypted (once; kept in the cache): its body's URL and plaintext size."""
    archive = archive_of(directory)
    out = []
    for path in files:
        url = f"{archive.headers.store}/bench/{path.name}"
        if not archive.headers.exists(url):
            seal(url, chunks(path), archive.headers, archive.key.public)
        out.append((url, path.stat().st_size))
    return out


def check(directory: Path, files: tuple[Path, ...], archived: bool) -> None:
    """The validator's own checks on the pair, in its worker processes: of the archived
    bodies, decrypted, or of the plaintext files."""
    from services.validator.sources import use_archive
    from services.validator.validation import InputFile, validate, worker_pool

    settings = ValidatorSettings()
    archive = archive_of(directory) if archived else None
    use_archive(archive)
    inputs = (
        [
            InputFile(p.name, url, FileRole.RAW_READS, archived_size=size)
            for p, (url, size) in zip(files, sealed(directory, files), strict=True)
        ]
        if archived
        else [InputFile(p.name, p.as_uri(), FileRole.RAW_READS) for p in files]
    )
    pool = worker_pool(2, fork=True, archive=archive)
    try:
        outcome = validate(inputs, settings, AnalysisType.WGS, pool, "GRCh38")
    finally:
        pool.shutdown()
    if outcome.verdict.value != "accepted":
        raise SystemExit(
            f"the bench pair was {outcome.verdict.value}: {[o.findings.problems for o in outcome.files]}"
        )


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
    parser.add_argument("--check", choices=["plain", "archived"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    directory = StateSettings().cache / "bench" / f"validate-{args.size_mb}mb"
    r1, r2 = generate(directory, args.size_mb)
    if args.check:
        check(directory, (r1, r2), args.check == "archived")
        return
    sealed(directory, (r1, r2))
    s1, s2 = startup_pair(directory, r1, r2)
    megabytes = (r1.stat().st_size + r2.stat().st_size) / 1e6
    exe = Path(sys.executable)
    genomhub = exe.with_name("genomhub")
    print(f"input: {r1.name} + {r2.name}, {megabytes:.0f} MB compressed, in {directory}")
    files = f"{r1} {r2}"
    validator = "validator (genomhub validate)"
    plain, archived = "checks of the plaintext pair", "checks of the archived pair, decrypted"
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
        plain: f"{exe} {__file__} --size-mb {args.size_mb} --check plain",
        archived: f"{exe} {__file__} --size-mb {args.size_mb} --check archived",
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
    rates = {
        label: megabytes / min(walls[label]) for label in commands if label not in (startup, plain, archived)
    }
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
    for label in (plain, archived):
        runs = " ".join(f"{w:.2f}" for w in walls[label])
        print(f"{label:<40} {min(walls[label]):7.2f} s  peak RSS {peaks[label]:7.1f} MB  (runs: {runs} s)")
    print(
        f"archived / plaintext time: {min(walls[archived]) / min(walls[plain]):.3f} "
        "(aim: at most 1.10; a loaded, shared 2-core machine)"
    )


if __name__ == "__main__":
    main()
