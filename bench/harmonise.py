"""Overhead of the harmoniser's local backend next to the same commands run by hand.

The 1 Mb case of the correctness test (30x, 0.2% errors, 5% duplicates, 100 SNPs) is
simulated once; the reference indexes are built beforehand, so both sides do exactly the
same work. Then, in the same run, the local backend processes the sample (with its
step processes, trace file and pipeline_info) and the identical commands run as one shell
script, each twice in alternation; the best of each is compared. A second ratio includes
the backend's copy of the outputs into the archive (sha256 in the same pass).

    .venv/bin/python bench/harmonise.py [--threads 2] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import tempfile
import time
from pathlib import Path

from services.harmoniser.inputs import SampleReads, arrange_lanes
from services.harmoniser.layout import collect
from services.harmoniser.local import LocalBackend, shell_script, staged
from shared.encryption import read_public_key, write_key_pair
from shared.headers import HeaderStore
from shared.storage import ArchiveWriter
from shared.synthetic import simulate_paired_reads, synthetic_reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-harmonise-") as tmp:
        root = Path(tmp)
        writer = ArchiveWriter(  # the archive encrypts what it takes in, as the service does
            read_public_key(write_key_pair(root / "keys", "bench")[1]),
            HeaderStore((root / "store").as_uri(), (root / "headers").as_uri()),
        )
        cache = root / "cache"
        fasta = synthetic_reference(cache)
        sim = simulate_paired_reads(
            fasta,
            root / "reads",
            prefix="S1",
            coverage=30,
            error_rate=0.002,
            duplicate_fraction=0.05,
            snps=100,
            seed=7,
        )
        reads = SampleReads(
            "P1", "S1", tuple(arrange_lanes({p.name: p.as_uri() for p in (sim.fastq_1, sim.fastq_2)}))
        )
        backend = LocalBackend(fasta, cache, args.threads, "3.5.1")
        index = backend.index(reads)  # built once, outside both timings
        script = shell_script(staged(reads), index, args.threads)  # local paths
        print(f"sample: {sim.pairs} pairs over 1 Mb, {args.threads} threads, {args.rounds} rounds")

        backend_times, archive_times, shell_times = [], [], []
        for n in range(args.rounds):
            rundir = root / f"backend-{n}"
            started = time.perf_counter()
            outdir = asyncio.run(backend.run(reads, rundir, False, lambda _pgid: None))
            backend_times.append(time.perf_counter() - started)
            collect(outdir, "S1", (root / "store" / str(n)).as_uri(), writer, "bench")
            archive_times.append(time.perf_counter() - started)

            shelldir = root / f"shell-{n}"
            shelldir.mkdir()
            started = time.perf_counter()
            subprocess.run(["bash", "-c", script], cwd=shelldir, check=True, capture_output=True)
            shell_times.append(time.perf_counter() - started)
            print(
                f"round {n + 1}: backend {backend_times[-1]:.2f} s (+archive {archive_times[-1]:.2f} s), "
                f"shell {shell_times[-1]:.2f} s"
            )
        best_backend, best_archive, best_shell = min(backend_times), min(archive_times), min(shell_times)
        print(f"by hand in a shell:           {best_shell:.2f} s")
        print(f"local backend:                {best_backend:.2f} s  ratio {best_backend / best_shell:.3f}")
        print(f"local backend + into archive: {best_archive:.2f} s  ratio {best_archive / best_shell:.3f}")


if __name__ == "__main__":
    main()
