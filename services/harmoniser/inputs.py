"""What Sarek needs to know about a sample's raw reads: lanes, pairs, flowcells, platforms.

Both backends describe a sample the same way, as Sarek's samplesheet does: one row per lane,
with the patient and sample pseudonyms, and either a FASTQ pair or an unaligned BAM. The
flowcell of a FASTQ lane is read from its first read name, as Sarek does, because that is
what goes into the read group's ID.

The URLs given here are the run's decrypted copies (:meth:`Harmoniser.stage
<services.harmoniser.harmonise.Harmoniser.stage>`), never archived bodies: the archive's
bytes are read once, through ``shared.storage.open_archived``, into the run's scratch space.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass

import pysam

from shared.fastq_files import FASTQ_NAME
from shared.platforms import Technology, UnknownPlatform, sam_platform, sequencing_technology
from shared.storage import filesystem

UBAM_NAME = re.compile(r"\.(?:u)?bam$")


class InputError(Exception):
    """The raw reads cannot be arranged into lanes."""


@dataclass(frozen=True)
class Lane:
    """One samplesheet row's reads: a FASTQ pair (or single FASTQ) or an unaligned BAM."""

    lane: str
    fastq_1: str | None = None
    fastq_2: str | None = None
    bam: str | None = None
    flowcell: str = "NA"
    platform: str = "ILLUMINA"
    read_group_description: str = ""

    @property
    def technology(self) -> Technology:
        try:
            return sequencing_technology(self.platform)
        except UnknownPlatform as exc:
            raise InputError(f"lane {self.lane}: {exc}") from exc

    @property
    def long_read(self) -> bool:
        """PacBio or ONT reads, whether in an unaligned BAM or a FASTQ; an Illumina uBAM is short."""
        return self.technology.long_read

    @property
    def minimap2_preset(self) -> str:
        """map-ont for ONT, map-hifi for PacBio HiFi (CCS), map-pb for other PacBio reads."""
        technology = self.technology
        if technology is Technology.ONT:
            return "map-ont"
        if technology is Technology.PACBIO:
            return "map-pb" if "READTYPE=SUBREAD" in self.read_group_description.upper() else "map-hifi"
        raise InputError(f"lane {self.lane}: no minimap2 preset for platform {self.platform!r}")


@dataclass(frozen=True)
class SampleReads:
    patient: str
    sample: str
    lanes: tuple[Lane, ...]


def flowcell_from_read_name(line: str) -> str:
    """Sarek's rule: fields split on ':'; seven or more (CASAVA 1.8+) -> the third, five -> first."""
    if not line.startswith("@"):
        raise InputError(f"not a FASTQ record header: {line[:80]!r}")
    fields = line[1:].rstrip("\n").split(":")
    if len(fields) >= 7:
        return fields[2]
    if len(fields) == 5:
        return fields[0]
    return "NA"


def first_line(url: str) -> str:
    fs, path = filesystem(url)
    with fs.open(path, "rb") as raw, gzip.open(raw, "rt", encoding="ascii", errors="replace") as text:
        return text.readline()


def ubam_read_group(url: str) -> tuple[str, str, str]:
    """Platform, description and ID of the first @RG of an unaligned BAM."""
    fs, path = filesystem(url)
    with fs.open(path, "rb") as raw, pysam.AlignmentFile(raw, "rb", check_sq=False) as bam:
        groups = bam.header.to_dict().get("RG", [])
    if not groups:
        raise InputError(f"{url}: unaligned BAM without an @RG line, so its platform is unknown")
    group = groups[0]
    return str(group.get("PL", "")).upper(), str(group.get("DS", "")), str(group.get("ID", ""))


def ubam_platform(name: str, group_platform: str, submitted: str) -> str:
    """A uBAM's own @RG PL (the submission's platform where PL is empty), as a SAM PL value."""
    if not group_platform:
        return submitted
    try:
        return sam_platform(group_platform)
    except UnknownPlatform as exc:
        raise InputError(f"{name}: @RG PL: {exc}") from exc


def arrange_lanes(files: dict[str, str], platform: str = "ILLUMINA") -> list[Lane]:
    """Lanes from raw file names -> URLs: FASTQs paired by their R1/R2 names, uBAMs alone.

    A FASTQ lane's platform is the submission's ``platform``; a uBAM's is its own @RG PL
    (the submission's where PL is empty). Lane names are the lane numbers of the reads when
    those are unique, else 1, 2, ... (Sarek requires a lane per row, unique within a sample).
    """
    try:
        submitted = sam_platform(platform)
    except UnknownPlatform as exc:
        raise InputError(f"the submission's platform: {exc}") from exc
    pairs: dict[tuple[str, str], dict[str, str]] = {}
    bams: list[str] = []
    for name in sorted(files):
        if UBAM_NAME.search(name):
            bams.append(name)
            continue
        match = FASTQ_NAME.match(name)
        if match is None:
            if re.search(r"\.f(ast)?q\.gz$", name):
                pairs[(name, "")] = {"1": name}
                continue
            raise InputError(f"{name}: neither a gzipped FASTQ (.fastq.gz/.fq.gz) nor an unaligned BAM")
        mate = match["mate"][-1]
        key = (match["stem"], match["tail"])
        if mate in pairs.setdefault(key, {}):
            raise InputError(f"{name}: two files for read {mate} of {match['stem']}")
        pairs[key][mate] = name
    lanes: list[Lane] = []
    for _key, mates in sorted(pairs.items()):
        if "1" not in mates:
            raise InputError(f"{mates['2']}: read 2 without its read 1")
        header = first_line(files[mates["1"]])
        fields = header[1:].split(" ")[0].split(":")
        lane_no = fields[3] if len(fields) >= 7 else (fields[1] if len(fields) == 5 else "")
        lanes.append(
            Lane(
                lane=lane_no,
                fastq_1=files[mates["1"]],
                fastq_2=files[mates["2"]] if "2" in mates else None,
                flowcell=flowcell_from_read_name(header),
                platform=submitted,
            )
        )
    for name in bams:
        group_platform, description, group_id = ubam_read_group(files[name])
        lanes.append(
            Lane(
                lane="",
                bam=files[name],
                flowcell=group_id or "NA",
                platform=ubam_platform(name, group_platform, submitted),
                read_group_description=description,
            )
        )
    names = [lane.lane for lane in lanes]
    if "" in names or len(set(names)) != len(names):
        lanes = [
            Lane(str(i), ln.fastq_1, ln.fastq_2, ln.bam, ln.flowcell, ln.platform, ln.read_group_description)
            for i, ln in enumerate(lanes, start=1)
        ]
    if not lanes:
        raise InputError("no raw reads to harmonise")
    return lanes


def read_group(reads: SampleReads, lane: Lane, reference: str) -> str:
    """Sarek's @RG line: ``ID:<flowcell>.<sample>.<lane> PU:<lane> SM:<patient>_<sample> ...``.

    Tabs are written as ``\\t`` escapes, as bwa and minimap2 take them in ``-R``.
    """
    fields = [
        "@RG",
        f"ID:{lane.flowcell}.{reads.sample}.{lane.lane}",
        f"PU:{lane.lane}",
        f"SM:{reads.patient}_{reads.sample}",
        f"LB:{reads.sample}",
        f"DS:{lane.read_group_description or reference}",
        f"PL:{lane.platform}",
    ]
    return "\\t".join(fields)
