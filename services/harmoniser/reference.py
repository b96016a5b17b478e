"""The reference genome's aligner indexes, built once into the cache and shared by every job.

Building a bwa index of GRCh38 takes about an hour, so it is done once per reference FASTA
(identified by its path, size and modification time) and never by two jobs at once: a file
lock serialises builders, and each index is built in a temporary folder that is renamed
into place only when complete, so a crash mid-build leaves nothing that looks usable.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shared.locks import exclusively

MINIMAP2_PRESETS = ("map-ont", "map-hifi", "map-pb")


class IndexBuildError(Exception):
    """The configured reference cannot be indexed."""


@dataclass(frozen=True)
class ReferenceIndex:
    """Where the FASTA (with .fai) and its indexes are, inside one cache folder."""

    directory: Path
    name: str

    @property
    def fasta(self) -> Path:
        """The FASTA beside its .fai, as samtools and bcftools need it (a link to the original)."""
        return self.directory / "fasta" / self.name

    @property
    def bwa(self) -> Path:
        """The prefix ``bwa mem`` takes."""
        return self.directory / "bwa" / self.name

    def minimap2(self, preset: str) -> Path:
        return self.directory / f"minimap2-{preset}" / f"{self.name}.mmi"


def _identity(fasta: Path) -> str:
    stat = fasta.stat()
    key = f"{fasta.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _build(target: Path, make: Callable[[Path], None]) -> None:
    """Run ``make(tmp)`` in a fresh temporary folder, then rename it to ``target``."""
    if target.exists():
        return
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
    tmp.mkdir(parents=True)
    try:
        make(tmp)
        os.rename(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _run(args: list[str]) -> None:
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise IndexBuildError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")


def reference_index(
    fasta: Path, cache: Path, *, bwa: bool = False, minimap2: tuple[str, ...] = ()
) -> ReferenceIndex:
    """The index folder of ``fasta`` with the requested indexes built (each only once)."""
    if not fasta.exists():
        raise IndexBuildError(f"reference FASTA {fasta} does not exist")
    unknown = set(minimap2) - set(MINIMAP2_PRESETS)
    if unknown:
        raise IndexBuildError(f"unknown minimap2 presets {sorted(unknown)}")
    name = "genome" + "".join(fasta.suffixes[-2:] if fasta.name.endswith(".gz") else fasta.suffixes[-1:])
    index = ReferenceIndex(cache / "harmoniser" / "reference" / f"{fasta.stem}-{_identity(fasta)}", name)
    with exclusively(index.directory / ".lock"):

        def link(tmp: Path) -> None:
            (tmp / name).symlink_to(fasta.resolve())
            for suffix in (".fai", ".gzi"):
                beside = Path(f"{fasta}{suffix}")
                if beside.exists():
                    (tmp / f"{name}{suffix}").symlink_to(beside.resolve())
            if not (tmp / f"{name}.fai").exists():
                _run(["samtools", "faidx", str(tmp / name)])

        _build(index.fasta.parent, link)
        if bwa:
            _build(index.bwa.parent, lambda tmp: _run(["bwa", "index", "-p", str(tmp / name), str(fasta)]))
        for preset in minimap2:
            _build(
                index.minimap2(preset).parent,
                lambda tmp, p=preset: _run(  # type: ignore[misc]
                    ["minimap2", "-x", p, "-d", str(tmp / f"{name}.mmi"), str(fasta)]
                ),
            )
    return index
