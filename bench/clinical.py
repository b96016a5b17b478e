"""Benchmark of the validator's clinical-output paths: a CRAM against samtools, a VCF against bcftools.

Generates (once, into the cache outside git, ``<cache>/bench/clinical-*``) a coordinate-sorted
CRAM of ``--cram-mb`` MB on the synthetic reference, and a bgzipped single-sample VCF of
``--vcf-records`` records; then times, in the same run and on the same files:

- the CRAM: ``genomhub validate`` (header, reference, end of file, every record decoded with
  its bases) against ``samtools flagstat`` (the named baseline: one decoding pass, on
  samtools' default of one thread), ``samtools flagstat -@ 1`` (one thread more: as many as
  the validator's readers, to compare like with like) and ``samtools quickcheck`` (header and
  end of file only, shown for scale); each label says how many threads decode;
- the VCF: ``genomhub validate`` against ``bcftools view -H | wc -l`` (every record parsed).

Each command runs ``--rounds`` times, in turn (the machine is shared), and the fastest counts;
peak RSS is the largest resident set of any process of the command. The validator's report is
read back and its record count held to the baseline's, so a validator that stopped early
cannot look fast. Aims: the CRAM at >= 0.9 of flagstat, the VCF at >= 0.8 of bcftools, and
peak RSS that does not grow with the file (run two sizes to see it).

    .venv/bin/python bench/clinical.py [--cram-mb 2000] [--vcf-records 1000000] [--only cram|vcf]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from services.validator.alignments import decoding_threads
from shared.config import StateSettings
from shared.profiles import SYNTHETIC_NAME
from shared.synthetic import SYNTHETIC_CONTIGS, contig_sequence, synthetic_reference

READ_LENGTH = 150
POOL = 4096
BYTES_PER_READ = 100
"""CRAM bytes per simulated read (measured: uniform Phred 2-41 qualities dominate), to size the file."""
QUALITIES = "".join(chr(33 + q) for q in range(2, 42))


def sam_header(reference: Path) -> str:
    lines = ["@HD\tVN:1.6\tSO:coordinate"]
    lines += [f"@SQ\tSN:{name}\tLN:{length}" for name, length in SYNTHETIC_CONTIGS]
    lines.append("@RG\tID:B1.L1\tSM:B1\tPL:ILLUMINA\tLB:lib1")
    lines.append(f"@PG\tID:bwa\tPN:bwa\tVN:0.7.17\tCL:bwa mem {reference} R1.fq R2.fq")
    lines.append("@PG\tID:samtools.markdup\tPN:samtools\tPP:bwa\tVN:1.16\tCL:samtools markdup in.bam out.bam")
    return "\n".join(lines) + "\n"


def generate_cram(directory: Path, size_mb: int, reference: Path) -> Path:
    """A coordinate-sorted CRAM 3.0 of about ``size_mb`` MB: single-end 150 bp reads laid
    along each contig in order, every 40th a marked duplicate, qualities drawn uniformly
    (so that the file's bulk is quality data, as in a real unbinned CRAM)."""
    cram = directory / "bench.cram"
    if cram.exists():
        return cram
    directory.mkdir(parents=True, exist_ok=True)
    reads = size_mb * 1_000_000 // BYTES_PER_READ
    rng = random.Random(13)
    quals = ["".join(rng.choices(QUALITIES, k=READ_LENGTH)) for _ in range(POOL)]
    total = sum(length for _, length in SYNTHETIC_CONTIGS)
    tmp = cram.with_suffix(".tmp")
    encoder = subprocess.Popen(
        ["samtools", "view", "-C", "-T", str(reference), "-@", "1", "-o", str(tmp), "-"],
        stdin=subprocess.PIPE,
    )
    assert encoder.stdin is not None
    encoder.stdin.write(sam_header(reference).encode())
    n = 0
    for contig, length in SYNTHETIC_CONTIGS:
        sequence = contig_sequence(contig, length)
        here = reads * length // total
        span = length - READ_LENGTH
        batch = []
        for i in range(here):
            pos = i * span // here
            flag = (16 if i & 1 else 0) | (1024 if i % 40 == 0 else 0)
            batch.append(
                f"b{n}\t{flag}\t{contig}\t{pos + 1}\t60\t{READ_LENGTH}M\t*\t0\t0\t"
                f"{sequence[pos : pos + READ_LENGTH]}\t{quals[(n * 7) % POOL]}\tRG:Z:B1.L1\n"
            )
            n += 1
            if len(batch) == 50_000:
                encoder.stdin.write("".join(batch).encode())
                batch = []
        encoder.stdin.write("".join(batch).encode())
    encoder.stdin.close()
    if encoder.wait() != 0:
        raise SystemExit("samtools view -C failed")
    tmp.rename(cram)
    return cram


def generate_vcf(directory: Path, records: int) -> Path:
    """A bgzipped, tabix-indexed VCF 4.2 of one sample: SNVs along the synthetic contigs in
    order, with the INFO and FORMAT fields a germline caller writes."""
    vcf = directory / "bench.vcf.gz"
    if vcf.exists():
        return vcf
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(17)
    total = sum(length for _, length in SYNTHETIC_CONTIGS)
    header = ["##fileformat=VCFv4.2", "##source=nf-core/sarek 3.5.1 (bcftools mpileup)"]
    header += [f"##contig=<ID={name},length={length}>" for name, length in SYNTHETIC_CONTIGS]
    header += [
        '##INFO=<ID=DP,Number=1,Type=Integer,Description="Total depth">',
        '##INFO=<ID=MQ,Number=1,Type=Integer,Description="Mapping quality">',
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        '##FORMAT=<ID=AD,Number=R,Type=Integer,Description="Allelic depths">',
        '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Depth">',
        '##FORMAT=<ID=GQ,Number=1,Type=Integer,Description="Genotype quality">',
        '##FORMAT=<ID=PL,Number=G,Type=Integer,Description="Phred-scaled genotype likelihoods">',
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tB1",
    ]
    tmp = vcf.with_suffix(".tmp")
    with tmp.open("wb") as out:
        bgzip = subprocess.Popen(["bgzip", "-@", "1", "-c"], stdin=subprocess.PIPE, stdout=out)
        assert bgzip.stdin is not None
        bgzip.stdin.write(("\n".join(header) + "\n").encode())
        for contig, length in SYNTHETIC_CONTIGS:
            sequence = contig_sequence(contig, length)
            here = min(records * length // total, length - 1)
            batch = []
            for i in range(here):
                pos = 1 + i * (length - 1) // here
                ref = sequence[pos - 1]
                alt = "ACGT"[("ACGT".index(ref) + 1 + i % 3) % 4]
                depth = 20 + rng.randrange(40)
                alts = depth // 2 if i % 3 else depth
                gt = "0/1" if i % 3 else "1/1"
                batch.append(
                    f"{contig}\t{pos}\t.\t{ref}\t{alt}\t{50 + i % 200}\tPASS\tDP={depth};MQ=60\t"
                    f"GT:AD:DP:GQ:PL\t{gt}:{depth - alts},{alts}:{depth}:{20 + i % 79}:{i % 250},0,{i % 900}\n"
                )
                if len(batch) == 50_000:
                    bgzip.stdin.write("".join(batch).encode())
                    batch = []
            bgzip.stdin.write("".join(batch).encode())
        bgzip.stdin.close()
        if bgzip.wait() != 0:
            raise SystemExit("bgzip failed")
    tmp.rename(vcf)
    subprocess.run(["tabix", "-f", "-p", "vcf", str(vcf)], check=True)
    return vcf


def run(label: str, command: str, allowed: tuple[int, ...] = (0,)) -> tuple[float, float, str]:
    """Wall time of ``command`` (a shell line), the peak RSS (MB) of any of its processes, its stdout."""
    wrapped = ["/usr/bin/time", "-f", "%M", "bash", "-c", command]
    started = time.perf_counter()
    done = subprocess.run(wrapped, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode not in allowed:
        raise SystemExit(f"{label} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return wall, int(done.stderr.strip().splitlines()[-1]) / 1024, done.stdout


def compare(
    title: str,
    megabytes: float,
    commands: dict[str, str],
    baseline: str,
    aim: float,
    rounds: int,
    count: Callable[[str, str], int],
) -> float:
    """Time ``commands`` in turn; print each, and the validator's rate as a share of the others'."""
    walls: dict[str, list[float]] = {label: [] for label in commands}
    peaks = dict.fromkeys(commands, 0.0)
    counts: dict[str, int] = {}
    for _ in range(rounds):
        for label, command in commands.items():
            wall, peak, out = run(label, command, (0, 1) if label == VALIDATOR else (0,))
            walls[label].append(wall)
            peaks[label] = max(peaks[label], peak)
            if label in (VALIDATOR, baseline):
                counts[label] = count(label, out)
    if counts[VALIDATOR] != counts[baseline]:
        raise SystemExit(
            f"{title}: the validator counted {counts[VALIDATOR]} records, {baseline} {counts[baseline]}"
        )
    print(f"\n{title}: {megabytes:.0f} MB, {counts[baseline]} records")
    for label in commands:
        runs = " ".join(f"{w:.2f}" for w in walls[label])
        print(
            f"  {label:<34} {min(walls[label]):8.2f} s {megabytes / min(walls[label]):9.1f} MB/s  "
            f"peak RSS {peaks[label]:7.1f} MB  (runs: {runs} s)"
        )
    ratio = min(walls[baseline]) / min(walls[VALIDATOR])
    for label in commands:
        if label != VALIDATOR:
            share = min(walls[label]) / min(walls[VALIDATOR])
            mark = f"  (aim >= {aim}: {'met' if share >= aim else 'NOT met'})" if label == baseline else ""
            print(f"  validator / {label:<34} {share:6.2f}{mark}")
    return ratio


VALIDATOR = f"validator (genomhub validate, {decoding_threads()} threads)"
FLAGSTAT = "samtools flagstat (1 thread)"


def validator_records(key: str) -> Callable[[str, str], int]:
    def count(label: str, out: str) -> int:
        if label == VALIDATOR:
            [found] = json.loads(out)["files"]
            return int(found["metrics"][key])
        if out.lstrip().startswith("{"):
            return int(json.loads(out)["QC-passed reads"]["total"])
        return int(out.strip())

    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cram-mb", type=int, default=2000, help="Size of the generated CRAM.")
    parser.add_argument("--vcf-records", type=int, default=1_000_000, help="Records of the generated VCF.")
    parser.add_argument(
        "--rounds", type=int, default=3, help="Runs of each command, in turn; the fastest counts."
    )
    parser.add_argument("--only", choices=["cram", "vcf"], default=None)
    args = parser.parse_args()
    settings = StateSettings()
    reference = synthetic_reference(settings.cache)
    genomhub = Path(sys.executable).with_name("genomhub")
    validate = f"{genomhub} validate --json --reference-profile {SYNTHETIC_NAME} --reference {reference}"
    bench = settings.cache / "bench"
    if args.only in (None, "cram"):
        started = time.perf_counter()
        cram = generate_cram(bench / f"clinical-cram-{args.cram_mb}mb", args.cram_mb, reference)
        print(f"CRAM {cram} ready in {time.perf_counter() - started:.1f} s")
        flagstat = f"samtools flagstat -O json --input-fmt-option reference={reference}"
        readers = decoding_threads()
        compare(
            "CRAM, coordinate-sorted, synthetic reference",
            cram.stat().st_size / 1e6,
            {
                VALIDATOR: f"{validate} {cram}",
                FLAGSTAT: f"{flagstat} {cram}",
                f"samtools flagstat -@ {readers - 1} ({readers} threads)": f"{flagstat} -@ {readers - 1} {cram}",
                "samtools quickcheck": f"samtools quickcheck {cram}",
            },
            FLAGSTAT,
            0.9,
            args.rounds,
            validator_records("reads"),
        )
    if args.only in (None, "vcf"):
        started = time.perf_counter()
        vcf = generate_vcf(bench / f"clinical-vcf-{args.vcf_records}", args.vcf_records)
        print(f"\nVCF {vcf} ready in {time.perf_counter() - started:.1f} s")
        compare(
            "VCF, bgzipped, one sample",
            vcf.stat().st_size / 1e6,
            {
                VALIDATOR: f"{validate} {vcf}",
                "bcftools view -H | wc -l": f"bcftools view -H {vcf} | wc -l",
            },
            "bcftools view -H | wc -l",
            0.8,
            args.rounds,
            validator_records("records"),
        )


if __name__ == "__main__":
    main()
