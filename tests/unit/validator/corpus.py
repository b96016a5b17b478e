"""Makes the validator's test inputs at test time: good files and a corpus of bad ones.

Nothing large is checked in. Reads are simulated from the project's 1 Mb synthetic
reference, so they align exactly; CRAMs are written by samtools against that reference.
"""

from __future__ import annotations

import gzip
import io
import random
import struct
import subprocess
import tarfile
from functools import lru_cache
from pathlib import Path

import pysam

from shared.config import ReferenceSettings, ValidatorSettings
from shared.synthetic import SYNTHETIC_CONTIGS, contig_sequence
from tools.stack.environment import StackSettings

GRCH37 = [
    (str(i), n)
    for i, n in enumerate(
        [
            249250621, 243199373, 198022430, 191154276, 180915260, 171115067, 159138663, 146364022,
            141213431, 135534747, 135006516, 133851895, 115169878, 107349540, 102531392, 90354753,
            81195210, 78077248, 59128983, 63025520, 48129895, 51304566,
        ],
        start=1,
    )
] + [("X", 155270560), ("Y", 59373566), ("MT", 16569)]  # fmt: skip

COMPLEMENT = str.maketrans("ACGT", "TGCA")
READ_LENGTH = 100


@lru_cache(maxsize=1)
def synthetic_fasta() -> Path:
    """The synthetic reference, as the local stack configures it (``GENOMHUB_REFERENCE_FASTA``)."""
    return StackSettings().reference()


def validator_settings(**fields: object) -> ValidatorSettings:
    """The validator's section as the local stack configures it: the synthetic reference set."""
    return ValidatorSettings(reference=ReferenceSettings(fasta=synthetic_fasta()), **fields)  # type: ignore[arg-type]


def reference_sequences() -> dict[str, str]:
    return {name: contig_sequence(name, length) for name, length in SYNTHETIC_CONTIGS}


def simulate_pairs(n: int, seed: int = 7) -> list[tuple[str, str, int, str, str, str]]:
    """``n`` read pairs: (name, contig, r1 position 0-based, r1 seq, r2 seq, quality)."""
    rng = random.Random(seed)
    refs = reference_sequences()
    pairs = []
    for i in range(n):
        contig = rng.choice(list(refs))
        seq = refs[contig]
        pos = rng.randrange(0, len(seq) - 400)
        r1 = seq[pos : pos + READ_LENGTH]
        mate = pos + 300 - READ_LENGTH
        r2 = seq[mate : mate + READ_LENGTH].translate(COMPLEMENT)[::-1]
        quality = "".join(rng.choice("FFFFFFFF:,#") for _ in range(READ_LENGTH))
        pairs.append((f"A00123:8:HX{seed:05d}:1:1101:{1000 + i}:{2000 + i}", contig, pos, r1, r2, quality))
    return pairs


def fastq_text(pairs: list[tuple[str, str, int, str, str, str]], read: int, style: str = "casava") -> str:
    out = []
    for name, _, _, r1, r2, quality in pairs:
        seq = r1 if read == 1 else r2
        header = f"@{name} {read}:N:0:ACGTACGT" if style == "casava" else f"@{name}/{read}"
        out.append(f"{header}\n{seq}\n+\n{quality}\n")
    return "".join(out)


def write_gz(path: Path, text: str | bytes) -> Path:
    data = text.encode() if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data, mtime=0))
    return path


def fastq_pair(directory: Path, n: int = 2000, seed: int = 7, prefix: str = "S1") -> tuple[Path, Path]:
    pairs = simulate_pairs(n, seed)
    r1 = write_gz(directory / f"{prefix}_R1.fastq.gz", fastq_text(pairs, 1))
    r2 = write_gz(directory / f"{prefix}_R2.fastq.gz", fastq_text(pairs, 2))
    return r1, r2


def sam_header(sample: str = "S1", contigs: list[tuple[str, int]] | None = None, sarek: bool = True) -> str:
    lines = ["@HD\tVN:1.6\tSO:coordinate"]
    for name, length in contigs or list(SYNTHETIC_CONTIGS):
        lines.append(f"@SQ\tSN:{name}\tLN:{length}")
    lines.append(f"@RG\tID:{sample}.L1\tSM:{sample}\tPL:ILLUMINA\tLB:lib1")
    lines.append("@PG\tID:bwa\tPN:bwa\tVN:0.7.17\tCL:bwa mem ref.fa R1.fq R2.fq")
    lines.append("@PG\tID:samtools.markdup\tPN:samtools\tPP:bwa\tVN:1.16\tCL:samtools markdup in.bam out.bam")
    if sarek:
        lines.append("@PG\tID:nf-core/sarek\tPN:nf-core/sarek\tPP:samtools.markdup\tVN:3.5.0")
    return "\n".join(lines) + "\n"


def aligned_sam(n: int = 500, sample: str = "S1") -> str:
    records = []
    for i, (name, contig, pos, r1, r2, quality) in enumerate(simulate_pairs(n)):
        mate = pos + 300 - READ_LENGTH
        dup = 1024 if i % 50 == 0 else 0
        r2_forward = r2.translate(COMPLEMENT)[::-1]
        records.append(
            f"{name}\t{99 | dup}\t{contig}\t{pos + 1}\t60\t{READ_LENGTH}M\t=\t{mate + 1}\t300\t{r1}\t{quality}\tRG:Z:{sample}.L1"
        )
        records.append(
            f"{name}\t{147 | dup}\t{contig}\t{mate + 1}\t60\t{READ_LENGTH}M\t=\t{pos + 1}\t-300\t{r2_forward}\t{quality[::-1]}\tRG:Z:{sample}.L1"
        )
    return "\n".join(records) + "\n"


def write_cram(path: Path, reference: Path, header: str, body: str, fmt: str = "cram") -> Path:
    sam = path.with_suffix(".sam")
    sam.write_text(header + body)
    subprocess.run(
        ["samtools", "sort", "-O", fmt, "--reference", str(reference), "-o", str(path), str(sam)],
        check=True,
        capture_output=True,
    )
    sam.unlink()
    return path


def good_cram(directory: Path, reference: Path, sample: str = "S1") -> Path:
    return write_cram(directory / f"{sample}.cram", reference, sam_header(sample), aligned_sam(sample=sample))


def vcf_text(sample: str = "S1", contigs: list[tuple[str, int]] | None = None, lengths: bool = True) -> str:
    lines = ["##fileformat=VCFv4.2", "##source=nf-core/sarek 3.5.0 (bcftools mpileup)"]
    for name, length in contigs or list(SYNTHETIC_CONTIGS):
        lines.append(f"##contig=<ID={name},length={length}>" if lengths else f"##contig=<ID={name}>")
    lines.append('##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">')
    lines.append(f"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t{sample}")
    first = (contigs or list(SYNTHETIC_CONTIGS))[0][0]
    refs = reference_sequences()
    for pos in (1000, 2000, 3000):
        base = refs[first][pos - 1] if first in refs else "A"
        alt = "G" if base != "G" else "T"
        lines.append(f"{first}\t{pos}\t.\t{base}\t{alt}\t50\tPASS\t.\tGT\t0/1")
    return "\n".join(lines) + "\n"


def write_vcf(directory: Path, name: str, text: str, index: bool = True) -> Path:
    plain = directory / name.removesuffix(".gz")
    plain.write_text(text)
    target = directory / name
    pysam.tabix_compress(str(plain), str(target), force=True)
    plain.unlink()
    if index:
        pysam.tabix_index(str(target), preset="vcf", force=True)
    return target


def long_read_ubam(
    path: Path, platform: str = "PACBIO", lengths: tuple[int, ...] = (1000, 2000, 3000, 4000, 10000)
) -> Path:
    ds = (
        "READTYPE=CCS;Ipd:CodecV1=ip"
        if platform == "PACBIO"
        else "basecall_model=dna_r10.4.1_e8.2_400bps_sup@v4.3.0"
    )
    header = {
        "HD": {"VN": "1.6", "SO": "unknown"},
        "RG": [{"ID": "m1", "SM": "S1", "PL": platform, "DS": ds}],
    }
    rng = random.Random(3)
    with pysam.AlignmentFile(str(path), "wb", header=header) as out:
        for i, length in enumerate(lengths):
            read = pysam.AlignedSegment(out.header)
            read.query_name = f"m1/{i}/ccs"
            read.flag = 4
            read.query_sequence = "".join(rng.choices("ACGT", k=length))
            read.query_qualities = pysam.qualitystring_to_array("I" * length)
            read.set_tag("RG", "m1")
            out.write(read)
    return path


def spring_archive(path: Path, reads: int = 4000, paired: bool = True) -> Path:
    params = struct.pack(
        "<8?d7I2B2x3i",
        paired,
        False,
        True,
        True,
        False,
        False,
        False,
        False,
        8.0,
        0,
        0,
        0,
        reads,
        reads // 2,
        reads // 2,
        151,
        1,
        True,
        256000,
        10000,
        8,
    )
    with tarfile.open(path, "w") as tar:
        for name, data in (("read_seq.bin", b"\x00" * 64), ("cp.bin", params + b"\x00" * 4)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path
