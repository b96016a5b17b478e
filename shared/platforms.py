"""Which kind of reads a sequencing platform makes: the one place that decides short or long.

The answer picks the pipeline and the aligner (bwa for short reads; minimap2 with the
platform's preset, or a long-read pipeline, for PacBio and ONT), so it is decided from the
platform, never from the container the reads come in: an unaligned BAM may hold Illumina
reads, and ONT reads may come as FASTQ. A platform is given as a SAM ``@RG PL`` value or
as a submitter writes it (``Oxford Nanopore``, ``PacBio HiFi``, ``NovaSeq 6000``); case,
spaces, ``-`` and ``_`` do not matter. A platform nobody has named is refused rather than
taken for short reads: nanopore reads through bwa, or Illumina reads through minimap2,
make a CRAM that looks right and is not.
"""

from __future__ import annotations

import re
from enum import Enum


class UnknownPlatform(ValueError):
    """A platform that is neither a SAM @RG PL value nor a known name of one."""


class Technology(Enum):
    SHORT_READ = "short-read"
    PACBIO = "PACBIO"
    ONT = "ONT"

    @property
    def long_read(self) -> bool:
        return self is not Technology.SHORT_READ


# Names (letters and digits only, lower case) -> (SAM @RG PL value, technology). The SAM
# specification's PL values first, then vendors' and instruments' names for them.
PLATFORMS: dict[str, tuple[str, Technology]] = {
    **{
        pl.lower(): (pl, Technology.SHORT_READ)
        for pl in (
            "ILLUMINA",
            "DNBSEQ",
            "ELEMENT",
            "ULTIMA",
            "IONTORRENT",
            "LS454",
            "SOLID",
            "SINGULAR",
            "HELICOS",
            "CAPILLARY",
        )
    },
    "pacbio": ("PACBIO", Technology.PACBIO),
    "ont": ("ONT", Technology.ONT),
    "mgi": ("DNBSEQ", Technology.SHORT_READ),
    "bgiseq": ("DNBSEQ", Technology.SHORT_READ),
    "mgiseq": ("DNBSEQ", Technology.SHORT_READ),
    "elementbiosciences": ("ELEMENT", Technology.SHORT_READ),
    "elementaviti": ("ELEMENT", Technology.SHORT_READ),
    "aviti": ("ELEMENT", Technology.SHORT_READ),
    "ultimagenomics": ("ULTIMA", Technology.SHORT_READ),
    "pacificbiosciences": ("PACBIO", Technology.PACBIO),
    "pacbiohifi": ("PACBIO", Technology.PACBIO),
    "hifi": ("PACBIO", Technology.PACBIO),
    "nanopore": ("ONT", Technology.ONT),
    "oxfordnanopore": ("ONT", Technology.ONT),
    "oxfordnanoporetechnologies": ("ONT", Technology.ONT),
}

# Instrument families, matched on the start of the name ("NovaSeq 6000", "PromethION 24"),
# alone or after their vendor's name ("PacBio Revio"). PacBio's Onso is a short-read
# instrument.
INSTRUMENTS: tuple[tuple[str, tuple[str, Technology]], ...] = (
    ("onso", ("PACBIO", Technology.SHORT_READ)),
    *(
        (prefix, ("ILLUMINA", Technology.SHORT_READ))
        for prefix in ("novaseq", "hiseq", "miseq", "nextseq", "iseq")
    ),
    *((prefix, ("PACBIO", Technology.PACBIO)) for prefix in ("revio", "sequel", "vega")),
    *((prefix, ("ONT", Technology.ONT)) for prefix in ("promethion", "gridion", "minion", "flongle")),
    *((prefix, ("DNBSEQ", Technology.SHORT_READ)) for prefix in ("dnbseq", "mgiseq", "bgiseq")),
    ("aviti", ("ELEMENT", Technology.SHORT_READ)),
)


def platform_key(platform: str) -> str:
    return re.sub(r"[^0-9a-z]", "", platform.casefold())


def _instrument(key: str) -> tuple[str, Technology] | None:
    for prefix, found in INSTRUMENTS:
        if key.startswith(prefix):
            return found
    return None


def _lookup(platform: str) -> tuple[str, Technology]:
    key = platform_key(platform)
    if key in PLATFORMS:
        return PLATFORMS[key]
    found = _instrument(key)
    if found is not None:
        return found
    for vendor, (pl, _technology) in PLATFORMS.items():
        if key.startswith(vendor):
            after = _instrument(key[len(vendor) :])
            if after is not None and after[0] == pl:  # an instrument of that vendor
                return after
    raise UnknownPlatform(
        f"unknown sequencing platform {platform!r}: expected a SAM @RG PL value "
        "(ILLUMINA, DNBSEQ, ELEMENT, ULTIMA, PACBIO, ONT, ...) or an instrument's name"
    )


def sequencing_technology(platform: str) -> Technology:
    """Short reads, PacBio or ONT, for a platform in any of its spellings."""
    return _lookup(platform)[1]


def sam_platform(platform: str) -> str:
    """The SAM @RG PL value of a platform, however it was spelled."""
    return _lookup(platform)[0]
