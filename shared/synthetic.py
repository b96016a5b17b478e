"""The project's small synthetic reference genome, made the same on every machine.

The demo and the tests cannot ship GRCh38 (3 GB), so they run on a deterministic random
reference of about 1 Mb with GRCh38-style contig names. It is generated from a fixed seed on
first use into the cache; its contig lengths and M5 checksums form the ``synthetic``
reference profile beside GRCh38's.
"""

from __future__ import annotations

import hashlib
import random
import subprocess
from pathlib import Path

SYNTHETIC_NAME = "synthetic-v1"
SYNTHETIC_CONTIGS = (("chr1", 600_000), ("chr2", 400_000))
SEED = 20260217  # the working group's meeting day
LINE = 60


def contig_sequence(name: str, length: int) -> str:
    rng = random.Random(f"{SEED}:{name}")
    return "".join(rng.choices("ACGT", k=length))


def synthetic_reference(cache: Path) -> Path:
    """The FASTA of the synthetic reference (with its .fai), written once into ``cache``."""
    fasta = cache / "reference" / SYNTHETIC_NAME / "genome.fa"
    if fasta.exists() and fasta.with_suffix(".fa.fai").exists():
        return fasta
    fasta.parent.mkdir(parents=True, exist_ok=True)
    tmp = fasta.with_suffix(".fa.tmp")
    with tmp.open("w") as out:
        for name, length in SYNTHETIC_CONTIGS:
            seq = contig_sequence(name, length)
            out.write(f">{name}\n")
            for i in range(0, length, LINE):
                out.write(seq[i : i + LINE] + "\n")
    tmp.rename(fasta)
    subprocess.run(["samtools", "faidx", str(fasta)], check=True)
    return fasta


def contig_md5s(fasta: Path) -> dict[str, tuple[int, str]]:
    """Each contig's length and M5 (md5 of the upper-case sequence without line breaks)."""
    result: dict[str, tuple[int, str]] = {}
    name: str | None = None
    digest = hashlib.md5(usedforsecurity=False)
    length = 0
    with fasta.open() as handle:
        for line in handle:
            if line.startswith(">"):
                if name is not None:
                    result[name] = (length, digest.hexdigest())
                name = line[1:].split()[0]
                digest = hashlib.md5(usedforsecurity=False)
                length = 0
            else:
                seq = line.strip().upper().encode()
                digest.update(seq)
                length += len(seq)
    if name is not None:
        result[name] = (length, digest.hexdigest())
    return result
