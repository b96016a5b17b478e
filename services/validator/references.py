"""Reference profiles: which genome build a file was made against.

A build is recognised by its primary contigs' lengths, whatever they are called (``chr1``
or ``1``); its flavour by the contigs' M5 checksums (sequence md5s), which tell apart
builds with the same lengths but different sequence (masked, patched). GRCh38 is the
production profile and ships as data; the synthetic profile is computed from the project's
small reference; GRCh37/hg19 is known only so an upload made against it can be named.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from shared.profiles import GRCH38, SYNTHETIC_NAME

DATA = Path(__file__).parent / "data"
HG19_CHRM = 16571


@dataclass(frozen=True)
class Contig:
    name: str
    length: int
    md5: str | None = None


@dataclass(frozen=True)
class Profile:
    name: str
    contigs: tuple[Contig, ...]

    def by_length(self) -> dict[int, Contig]:
        return {c.length: c for c in self.contigs}


@dataclass(frozen=True)
class Identification:
    """What a file's contigs say about its reference."""

    build: str | None
    matches_profile: bool
    naming: str = ""
    md5_checked: int = 0
    md5_mismatched: tuple[str, ...] = ()
    missing_lengths: tuple[str, ...] = ()

    @property
    def flavour(self) -> str:
        if self.build is None:
            return ""
        if self.md5_mismatched:
            return f"{self.build} lengths, different sequence ({len(self.md5_mismatched)} contigs' M5 differ)"
        checked = "M5 verified" if self.md5_checked else "M5 not given"
        return f"{self.build} ({self.naming} names, {checked})"


def read_table(path: Path, name: str) -> Profile:
    contigs = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        contig, length, md5 = line.split("\t")
        contigs.append(Contig(contig, int(length), md5))
    return Profile(name, tuple(contigs))


@lru_cache(maxsize=4)
def contig_md5s(fasta: Path) -> dict[str, tuple[int, str]]:
    """Each contig's length and M5 (md5 of the upper-case sequence without line breaks).
    Kept: a CRAM's check asks it of the same FASTA for the profile and for the reference."""
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


@lru_cache(maxsize=4)
def grch38() -> Profile:
    return read_table(DATA / f"{GRCH38}.primary.tsv", GRCH38)


@lru_cache(maxsize=4)
def grch37() -> Profile:
    return read_table(DATA / "GRCh37.primary.tsv", "GRCh37")


@lru_cache(maxsize=4)
def synthetic(fasta: Path) -> Profile:
    return Profile(
        SYNTHETIC_NAME, tuple(Contig(n, length, md5) for n, (length, md5) in contig_md5s(fasta).items())
    )


def profile(name: str, fasta: Path | None) -> Profile:
    """The reference profile called ``name`` (``GRCh38`` or ``synthetic-v1``); the synthetic
    one is read from its ``fasta``, which it cannot be without."""
    if name == GRCH38:
        return grch38()
    if name == SYNTHETIC_NAME:
        if fasta is None:
            raise ValueError(f"the {SYNTHETIC_NAME} profile is read from its FASTA, and none is given")
        return synthetic(fasta)
    raise ValueError(f"unknown reference profile {name!r}: GRCh38 or {SYNTHETIC_NAME}")


def decoding_reference(configured: Path | None, given: Path | None = None) -> Path | None:
    """The FASTA that CRAMs are decoded with, or None if none is known.

    A CRAM stores reads as differences from its reference, so it is decoded only against the
    sequences it was made against: the FASTA given (``genomhub validate --reference``), else
    the configured one (``GENOMHUB_REFERENCE_FASTA``, which the local stack sets to the
    synthetic reference). Nothing else is guessed: a GRCh38 CRAM is never decoded against
    the synthetic FASTA, and without a FASTA the caller says so.
    """
    return given if given is not None else configured


def reference_needed(profile_name: str) -> str:
    """What to give so that a CRAM made against ``profile_name`` can be decoded, in plain words."""
    return (
        f"a CRAM is decoded against the FASTA of the reference it was made against ({profile_name}, "
        "with its .fai index): give it with --reference FASTA or set GENOMHUB_REFERENCE_FASTA"
    )


def _matches(contigs: list[Contig], known: Profile) -> tuple[int, int]:
    """How many of ``known``'s contigs appear by length in ``contigs``; and of how many."""
    lengths = {c.length for c in contigs}
    return sum(1 for c in known.contigs if c.length in lengths), len(known.contigs)


def identify(contigs: list[Contig], expected: Profile) -> Identification:
    """Which build ``contigs`` (from @SQ or ##contig lines) belong to, and whether it is ``expected``."""
    missing = tuple(c.name for c in contigs if c.length <= 0)
    candidates = [expected] + [p for p in (grch38(), grch37()) if p.name != expected.name]
    for known in candidates:
        found, total = _matches(contigs, known)
        # the autosomes and X carry the build; Y and M may be left out of a female sample's header
        if total and found >= min(total, max(2, total - 2)):
            mine = {c.length: c for c in contigs}
            mismatched = []
            checked = 0
            for ref in known.contigs:
                got = mine.get(ref.length)
                if got is None or got.md5 is None or ref.md5 is None:
                    continue
                checked += 1
                if got.md5.lower() != ref.md5:
                    mismatched.append(got.name)
            naming = "chr-prefixed" if any(c.name.startswith("chr") for c in contigs) else "plain"
            build = known.name
            if known.name == "GRCh37" and any(c.length == HG19_CHRM for c in contigs):
                build = "hg19"
            elif known.name == "GRCh37" and naming == "chr-prefixed":
                build = "GRCh37 (hg19 names)"
            return Identification(
                build=build,
                matches_profile=known.name == expected.name and not mismatched,
                naming=naming,
                md5_checked=checked,
                md5_mismatched=tuple(mismatched),
                missing_lengths=missing,
            )
    return Identification(build=None, matches_profile=False, missing_lengths=missing)
