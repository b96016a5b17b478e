"""The project's small synthetic reference genome, made the same on every machine.

The demo and the tests cannot ship GRCh38 (3 GB), so they run on a deterministic random
reference of about 1 Mb with GRCh38-style contig names. It is generated from a fixed seed on
first use into the cache; its contig lengths and M5 checksums form the ``synthetic``
reference profile beside GRCh38's.
"""

from __future__ import annotations

import math
import random
import subprocess
from dataclasses import dataclass
from pathlib import Path

from shared.events import Region
from shared.profiles import SYNTHETIC_NAME

# Reporting departments of each region (from the 2026 minutes and the regions' hospitals),
# for the demo and the benchmarks' synthetic submissions. Spelt as the hospitals spell
# themselves, æ, ø and å included: they travel unchanged to finance's statement.
DEPARTMENTS: dict[Region, tuple[str, ...]] = {
    Region.HOVEDSTADEN: ("Rigshospitalet", "Herlev Hospital", "Hvidovre Hospital"),
    Region.SJAELLAND: ("SUH Køge", "Holbæk Sygehus"),
    Region.NORDJYLLAND: ("Aalborg UH",),
    Region.MIDTJYLLAND: ("Aarhus UH", "MOMA", "Regionshospitalet Gødstrup"),
    Region.SYDDANMARK: ("OUH", "Sygehus Lillebælt Vejle", "Esbjerg Sygehus"),
}
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


# -- read simulator --------------------------------------------------------------------
# Reads with a known truth, so that the harmoniser's output can be checked against what was
# planted (every SNP, its genotype, the duplicate rate), and so that the demo and the
# validator's tests have realistic small samples: Illumina-style paired FASTQ.gz and
# long-read unaligned BAM with the header conventions of ONT (dorado) and PacBio (HiFi).

_COMPLEMENT = str.maketrans("ACGTN", "TGCAN")
_OTHER_BASES = {b: [x for x in "ACGT" if x != b] for b in "ACGT"}


def revcomp(seq: str) -> str:
    return seq.translate(_COMPLEMENT)[::-1]


def read_fasta(fasta: Path) -> dict[str, str]:
    """Contig name -> upper-case sequence; small references only (the whole thing in memory)."""
    contigs: dict[str, list[str]] = {}
    current: list[str] = []
    with fasta.open() as handle:
        for line in handle:
            if line.startswith(">"):
                current = contigs.setdefault(line[1:].split()[0], [])
            else:
                current.append(line.strip().upper())
    return {name: "".join(parts) for name, parts in contigs.items()}


@dataclass(frozen=True)
class PlantedSnp:
    """One planted SNP, 1-based like VCF; ``genotype`` is ``0/1`` or ``1/1``."""

    contig: str
    pos: int
    ref: str
    alt: str
    genotype: str


@dataclass(frozen=True)
class SimulatedPairs:
    fastq_1: Path
    fastq_2: Path
    pairs: int
    duplicate_pairs: int
    snps: tuple[PlantedSnp, ...]
    flowcell: str
    lane: int

    @property
    def duplicate_fraction(self) -> float:
        return self.duplicate_pairs / self.pairs if self.pairs else 0.0


@dataclass(frozen=True)
class SimulatedLongReads:
    ubam: Path
    reads: int
    bases: int
    platform: str
    snps: tuple[PlantedSnp, ...]


def _locate(reference: dict[str, str], offset: int) -> tuple[str, int]:
    """The contig and 0-based position of ``offset`` into the concatenated reference."""
    for name, seq in reference.items():
        if offset < len(seq):
            return name, offset
        offset -= len(seq)
    raise ValueError("offset beyond the reference")


def plant_snps(
    reference: dict[str, str], count: int, hom_fraction: float, rng: random.Random, margin: int = 1000
) -> tuple[PlantedSnp, ...]:
    """``count`` SNPs at least 500 bp apart and ``margin`` from contig ends, a share homozygous."""
    total = sum(len(s) for s in reference.values())
    hom = round(count * hom_fraction)
    taken: list[tuple[str, int]] = []
    while len(taken) < count:
        name, offset = _locate(reference, rng.randrange(total))
        seq = reference[name]
        if not margin <= offset < len(seq) - margin or seq[offset] not in "ACGT":
            continue
        if any(c == name and abs(p - offset) < 500 for c, p in taken):
            continue
        taken.append((name, offset))
    order = {name: i for i, name in enumerate(reference)}
    taken.sort(key=lambda cp: (order[cp[0]], cp[1]))
    homs = set(rng.sample(range(count), hom))
    snps = []
    for i, (name, offset) in enumerate(taken):
        ref = reference[name][offset]
        snps.append(
            PlantedSnp(name, offset + 1, ref, rng.choice(_OTHER_BASES[ref]), "1/1" if i in homs else "0/1")
        )
    return tuple(snps)


def haplotypes(
    reference: dict[str, str], snps: tuple[PlantedSnp, ...], rng: random.Random
) -> tuple[dict[str, str], dict[str, str]]:
    """The two haplotypes of the simulated diploid genome: a het SNP lands on one at random."""
    haps: tuple[dict[str, list[str]], dict[str, list[str]]] = (
        {n: list(s) for n, s in reference.items()},
        {n: list(s) for n, s in reference.items()},
    )
    for snp in snps:
        carriers = (0, 1) if snp.genotype == "1/1" else (rng.randrange(2),)
        for h in carriers:
            haps[h][snp.contig][snp.pos - 1] = snp.alt
    return ({n: "".join(s) for n, s in haps[0].items()}, {n: "".join(s) for n, s in haps[1].items()})


class _Errors:
    """Substitution errors at a fixed rate, placed by geometric gaps (fast: no draw per base)."""

    def __init__(self, rate: float, rng: random.Random) -> None:
        self.rng = rng
        self._log_keep = math.log1p(-rate) if 0 < rate < 1 else None
        self.next = self._gap()

    def _gap(self) -> int:
        if self._log_keep is None:
            return 1 << 62
        return int(math.log1p(-self.rng.random()) / self._log_keep)

    def apply(self, seq: str) -> str:
        if self.next >= len(seq):
            self.next -= len(seq)
            return seq
        bases = list(seq)
        while self.next < len(bases):
            b = bases[self.next]
            bases[self.next] = self.rng.choice(_OTHER_BASES.get(b, ["A"]))
            self.next += 1 + self._gap()
        self.next -= len(bases)
        return "".join(bases)


def phred_char(error_rate: float) -> str:
    """The quality that says the true error rate (capped at Q40), as a FASTQ character."""
    q = 40 if error_rate <= 0 else min(40, round(-10 * math.log10(error_rate)))
    return chr(33 + q)


def simulate_paired_reads(
    fasta: Path,
    out_dir: Path,
    *,
    prefix: str = "sample",
    coverage: float = 30.0,
    read_length: int = 150,
    insert_mean: int = 350,
    insert_sd: int = 35,
    error_rate: float = 0.002,
    duplicate_fraction: float = 0.05,
    snps: int = 100,
    hom_fraction: float = 1 / 3,
    seed: int = 1,
    flowcell: str = "HSYNTHDXX",
    lane: int = 1,
) -> SimulatedPairs:
    """Paired FASTQ.gz of a diploid sample of ``fasta`` with planted SNPs and PCR duplicates.

    Pairs = coverage x genome / (2 x read length). A PCR duplicate is a second copy of an
    earlier fragment (same ends, same strand) with its own sequencing errors, so duplicate
    marking should find exactly ``duplicate_pairs``. Read names follow CASAVA 1.8
    (``@instrument:run:flowcell:lane:tile:x:y 1:N:0:index``), which is where Sarek takes the
    flowcell of its read group from.
    """
    from isal import igzip  # faster gzip than zlib's, same format

    rng = random.Random(seed)
    reference = read_fasta(fasta)
    planted = plant_snps(reference, snps, hom_fraction, rng)
    haps = haplotypes(reference, planted, rng)
    names = list(reference)
    lengths = [len(reference[n]) for n in names]
    total_pairs = round(coverage * sum(lengths) / (2 * read_length))
    duplicates = round(total_pairs * duplicate_fraction)
    fragments: list[tuple[int, str, int, int, bool]] = []
    for _ in range(total_pairs - duplicates):
        name = rng.choices(names, weights=lengths)[0]
        size = max(read_length, min(int(rng.gauss(insert_mean, insert_sd)), 3 * insert_mean))
        start = rng.randrange(len(reference[name]) - size)
        fragments.append((rng.randrange(2), name, start, size, rng.random() < 0.5))
    fragments.extend(rng.choice(fragments[: total_pairs - duplicates]) for _ in range(duplicates))
    rng.shuffle(fragments)

    out_dir.mkdir(parents=True, exist_ok=True)
    r1_path, r2_path = out_dir / f"{prefix}_R1.fastq.gz", out_dir / f"{prefix}_R2.fastq.gz"
    errors = _Errors(error_rate, rng)
    qual = phred_char(error_rate) * read_length
    with (
        igzip.open(r1_path, "wt", compresslevel=1) as r1,  # type: ignore[no-untyped-call]
        igzip.open(r2_path, "wt", compresslevel=1) as r2,  # type: ignore[no-untyped-call]
    ):
        for i, (hap, name, start, size, reverse) in enumerate(fragments):
            frag = haps[hap][name][start : start + size]
            a, b = frag[:read_length], revcomp(frag[-read_length:])
            if reverse:
                a, b = b, a
            tile, rest = divmod(i, 1_000_000)
            read_id = f"@SIM01:1:{flowcell}:{lane}:{1101 + tile}:{rest // 1000}:{rest % 1000}"
            r1.write(f"{read_id} 1:N:0:ACGTACGT\n{errors.apply(a)}\n+\n{qual}\n")
            r2.write(f"{read_id} 2:N:0:ACGTACGT\n{errors.apply(b)}\n+\n{qual}\n")
    return SimulatedPairs(r1_path, r2_path, total_pairs, duplicates, planted, flowcell, lane)


ONT_BASECALL_MODEL = "dna_r10.4.1_e8.2_400bps_sup@v4.3.0"
PACBIO_READTYPE = "CCS"


def long_read_group(platform: str, read_group: str, sample: str) -> dict[str, str]:
    """The ``@RG`` of a long-read uBAM as the instruments' software writes it.

    ONT (dorado): ``PL:ONT`` and ``DS:runid=... basecall_model=...``. PacBio (HiFi):
    ``PL:PACBIO``, ``PM:`` the instrument and ``DS:READTYPE=CCS;...`` with the kits.
    """
    if platform == "ONT":
        return {
            "ID": read_group,
            "PL": "ONT",
            "PU": "PAQ00001",
            "PM": "PromethION",
            "DS": f"runid={read_group} basecall_model={ONT_BASECALL_MODEL}",
            "LB": sample,
            "SM": sample,
        }
    if platform == "PACBIO":
        return {
            "ID": read_group,
            "PL": "PACBIO",
            "PU": read_group,
            "PM": "REVIO",
            "DS": f"READTYPE={PACBIO_READTYPE};BINDINGKIT=102-739-100;SEQUENCINGKIT=102-118-800;"
            "BASECALLERVERSION=5.0.0;FRAMERATEHZ=100.000000",
            "LB": sample,
            "SM": sample,
        }
    raise ValueError(f"unknown long-read platform {platform!r}: ONT or PACBIO")


def simulate_long_reads(
    fasta: Path,
    ubam: Path,
    *,
    platform: str = "ONT",
    sample: str = "sample",
    coverage: float = 10.0,
    mean_length: int = 8000,
    error_rate: float = 0.01,
    snps: int = 20,
    hom_fraction: float = 1 / 3,
    seed: int = 1,
) -> SimulatedLongReads:
    """A small unaligned BAM of long reads from a diploid sample of ``fasta``.

    Lengths are gamma-distributed around ``mean_length``; errors are substitutions at
    ``error_rate`` (``0.01`` suits ONT sup, ``0.001`` HiFi). Names follow the platform:
    a UUID for ONT, ``<movie>/<zmw>/ccs`` for PacBio.
    """
    import uuid

    import pysam

    rng = random.Random(seed)
    reference = read_fasta(fasta)
    planted = plant_snps(reference, snps, hom_fraction, rng)
    haps = haplotypes(reference, planted, rng)
    names = list(reference)
    lengths = [len(reference[n]) for n in names]
    movie = "m84011_260217_101500_s1"
    read_group = movie if platform == "PACBIO" else f"{uuid.UUID(int=rng.getrandbits(128)).hex[:16]}"
    header = {
        "HD": {"VN": "1.6", "SO": "unknown"},
        "RG": [long_read_group(platform, read_group, sample)],
        "PG": [{"ID": "genomhub-simulator", "PN": "genomhub-simulator", "VN": "1"}],
    }
    errors = _Errors(error_rate, rng)
    target = coverage * sum(lengths)
    bases = reads = 0
    ubam.parent.mkdir(parents=True, exist_ok=True)
    with pysam.AlignmentFile(str(ubam), "wb", header=header) as out:
        while bases < target:
            name = rng.choices(names, weights=lengths)[0]
            size = max(500, min(int(rng.gammavariate(4.0, mean_length / 4.0)), len(reference[name]) - 1))
            start = rng.randrange(len(reference[name]) - size)
            seq = haps[rng.randrange(2)][name][start : start + size]
            if rng.random() < 0.5:
                seq = revcomp(seq)
            record = pysam.AlignedSegment(out.header)
            record.query_name = (
                f"{movie}/{reads + 1}/ccs"
                if platform == "PACBIO"
                else str(uuid.UUID(int=rng.getrandbits(128), version=4))
            )
            record.flag = 4
            record.query_sequence = errors.apply(seq)
            record.query_qualities = pysam.qualitystring_to_array(phred_char(error_rate) * size)
            record.set_tag("RG", read_group)
            out.write(record)
            reads += 1
            bases += size
    return SimulatedLongReads(ubam, reads, bases, platform, planted)
