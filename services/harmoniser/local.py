"""The ``local`` backend: Sarek's germline path run with the very tools Sarek runs.

It is the embedded default (demo, tests, a region without an HPC). The commands are those of
Sarek's modules for ``--aligner bwa-mem --tools bcftools``: ``bwa mem -K 100000000 -Y`` with
Sarek's read group, duplicate marking into a CRAM 3.0 with its index (samtools fixmate,
sort and markdup stand in for GATK MarkDuplicates), then ``bcftools mpileup | call -m |
reheader | view -i 'count(GT=="RR")==0'`` and ``tabix``, the stages of the pipe handing each
other uncompressed BCF rather than VCF text (the same records; formatting and parsing text
between them was most of the calling's time on a small genome). Long-read uBAMs go through
``minimap2`` with the platform's preset instead of bwa. Everything is written into Sarek's
output layout, including a Nextflow-format trace under ``pipeline_info/``.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

from services.harmoniser.inputs import InputError, Lane, SampleReads, read_group
from services.harmoniser.layout import SampleLayout
from services.harmoniser.reference import ReferenceIndex, reference_index
from services.harmoniser.steps import ProcessHook, Step, run_steps, trace_timestamp
from shared.storage import local_path

PIPELINE = "genomhub-local-germline"
BWA_MEM_ARGS = "-K 100000000 -Y"
VARIANT_FILTER = 'count(GT=="RR")==0'


def _q(value: str | Path) -> str:
    return shlex.quote(str(value))


def align_command(reads: SampleReads, lane: Lane, index: ReferenceIndex, threads: int) -> str:
    """The aligner's command for one lane, writing SAM to stdout."""
    group = read_group(reads, lane, str(index.fasta))
    if lane.long_read:
        preset = lane.minimap2_preset
        minimap2 = f"minimap2 -ax {preset} -y -t {threads} -R {_q(group)} {_q(index.minimap2(preset))}"
        if lane.bam is not None:
            return f"samtools fastq -T MM,ML {_q(lane.bam)} | {minimap2} -"
        assert lane.fastq_1 is not None
        return f"{minimap2} {_q(lane.fastq_1)}"
    if lane.bam is not None:  # a short-read uBAM: its pairs, interleaved, as Sarek's mapping does
        return (
            f"samtools collate -u -O {_q(lane.bam)} tmp/{_q(reads.sample)}.{_q(lane.lane)}.collate | "
            f"samtools fastq - | bwa mem {BWA_MEM_ARGS} -p -t {threads} -R {_q(group)} {_q(index.bwa)} -"
        )
    assert lane.fastq_1 is not None
    mates = " ".join(_q(p) for p in (lane.fastq_1, lane.fastq_2) if p)
    return f"bwa mem {BWA_MEM_ARGS} -t {threads} -R {_q(group)} {_q(index.bwa)} {mates}"


def local_steps(reads: SampleReads, index: ReferenceIndex, threads: int) -> list[Step]:
    """The commands, relative to the run folder: results in ``results/``, scratch in ``tmp/``."""
    out = SampleLayout(reads.sample)
    s = reads.sample
    fasta = _q(index.fasta)
    cram, vcf = f"results/{out.cram}", f"results/{out.vcf}"
    metrics, stats = f"results/{out.markduplicates_metrics}", f"results/{out.bcftools_stats}"
    mkdirs = " ".join(_q(Path(p).parent) for p in (cram, vcf, metrics, stats))
    markdup = (
        f"samtools markdup -@ {threads} -S -s -T tmp/{_q(s)}.markdup -f {_q(metrics)} --write-index "
        f"-O cram,version=3.0 --reference {fasta} - {_q(cram)}##idx##{_q(cram)}.crai"
    )
    steps: list[Step] = []
    if len(reads.lanes) == 1:
        steps.append(
            Step(
                f"MAPPING_MARKDUPLICATES ({s})",
                f"mkdir -p tmp {mkdirs}\n"
                f"{align_command(reads, reads.lanes[0], index, threads)} | samtools fixmate -m -u - - | "
                f"samtools sort -u -@ {threads} -T tmp/{_q(s)} - | {markdup}",
            )
        )
    else:
        for lane in reads.lanes:
            steps.append(
                Step(
                    f"MAPPING ({s} lane {lane.lane})",
                    f"mkdir -p tmp/lanes\n"
                    f"{align_command(reads, lane, index, threads)} | samtools fixmate -m -u - - | "
                    f"samtools sort -l 1 -@ {threads} -T tmp/{_q(s)}.{_q(lane.lane)} "
                    f"-o tmp/lanes/{_q(lane.lane)}.bam -",
                )
            )
        lane_bams = " ".join(f"tmp/lanes/{_q(lane.lane)}.bam" for lane in reads.lanes)
        steps.append(
            Step(
                f"MARKDUPLICATES ({s})",
                f"mkdir -p tmp {mkdirs}\nsamtools merge -u -@ {threads} - {lane_bams} | {markdup}",
            )
        )
    steps.append(
        Step(
            f"BCFTOOLS_MPILEUP ({s})",
            f"echo {_q(s)} > tmp/sample_name.list\n"
            f"bcftools mpileup --output-type u --fasta-ref {fasta} {_q(cram)} | "
            f"bcftools call --output-type u -m | "
            f"bcftools reheader --samples tmp/sample_name.list | "
            f"bcftools view --output-file {_q(vcf)} --output-type z -i {_q(VARIANT_FILTER)}\n"
            f"tabix -p vcf -f {_q(vcf)}",
        )
    )
    steps.append(Step(f"BCFTOOLS_STATS ({s})", f"bcftools stats {_q(vcf)} > {_q(stats)}"))
    return steps


def shell_script(reads: SampleReads, index: ReferenceIndex, threads: int) -> str:
    """The same commands as one shell script, as a person would run them by hand."""
    return (
        "set -euo pipefail\n" + "\n".join(step.script for step in local_steps(reads, index, threads)) + "\n"
    )


@lru_cache(maxsize=1)
def tool_versions() -> dict[str, str]:
    """Versions of the tools the local backend runs, for provenance and pipeline_info."""

    def output(*args: str) -> list[str]:
        done = subprocess.run(list(args), capture_output=True)
        return (done.stdout + done.stderr).decode(errors="replace").splitlines() or [""]

    bwa = [line.split(":", 1)[1].strip() for line in output("bwa") if line.startswith("Version:")]
    return {
        "bwa": bwa[0] if bwa else "unknown",
        "samtools": output("samtools", "--version")[0].split()[-1],
        "bcftools": output("bcftools", "--version")[0].split()[-1],
        "tabix": output("tabix", "--version")[0].split()[-1].strip("()"),
        "minimap2": output("minimap2", "--version")[0].strip(),
    }


def as_path(url: str | None) -> str | None:
    """The path of a lane's input: the harmoniser staged it decrypted in the run's scratch."""
    if url is None:
        return None
    path = local_path(url)
    if path is None:
        raise InputError(f"{url} is not a staged local file; the tools read plaintext paths only")
    return path


def staged(reads: SampleReads) -> SampleReads:
    lanes = [
        Lane(
            lane.lane,
            as_path(lane.fastq_1),
            as_path(lane.fastq_2),
            as_path(lane.bam),
            lane.flowcell,
            lane.platform,
            lane.read_group_description,
        )
        for lane in reads.lanes
    ]
    return SampleReads(reads.patient, reads.sample, tuple(lanes))


class LocalBackend:
    """Runs the germline path on this machine into ``<run>/results`` (Sarek's ``--outdir``)."""

    name = "local"

    def __init__(self, fasta: Path, cache: Path, threads: int, sarek_version: str) -> None:
        self.fasta = fasta
        self.cache = cache
        self.threads = threads
        self.sarek_version = sarek_version

    def index(self, reads: SampleReads) -> ReferenceIndex:
        presets = tuple(sorted({lane.minimap2_preset for lane in reads.lanes if lane.long_read}))
        short = any(not lane.long_read for lane in reads.lanes)
        return reference_index(self.fasta, self.cache, bwa=short, minimap2=presets)

    def parameters(self, reads: SampleReads) -> dict[str, object]:
        long_read = [lane for lane in reads.lanes if lane.long_read]
        return {
            "backend": self.name,
            "mirrors": f"nf-core/sarek {self.sarek_version}",
            "aligner": "minimap2" if long_read else "bwa-mem",
            "bwa_mem": BWA_MEM_ARGS,
            "minimap2_preset": sorted({lane.minimap2_preset for lane in long_read}),
            "markduplicates": "samtools fixmate -m | sort | markdup -S",
            "tools": "bcftools",
            "bcftools_call": "-m",
            "bcftools_view": f"-i '{VARIANT_FILTER}'",
            "cram_version": "3.0",
            "fasta": str(self.fasta),
            "software": tool_versions(),
        }

    def layout(self, reads: SampleReads) -> SampleLayout:
        """Sarek's folders, which the local steps write."""
        return SampleLayout(reads.sample)

    def pipeline(self, reads: SampleReads) -> None:
        """Always the configured one (genomhub's own germline path)."""
        del reads

    async def run(self, reads: SampleReads, rundir: Path, resume: bool, on_process: ProcessHook) -> Path:
        """Run the steps afresh (a relaunch starts clean); returns the output directory."""
        del resume  # the local steps are short; a relaunch redoes them from the start
        for sub in ("results", "tmp", "logs"):
            shutil.rmtree(rundir / sub, ignore_errors=True)
        rundir.mkdir(parents=True, exist_ok=True)
        local = staged(reads)
        index = await asyncio.to_thread(self.index, local)
        stamp = trace_timestamp()
        info = rundir / "results" / "pipeline_info"
        info.mkdir(parents=True)
        (info / f"params_{stamp}.json").write_text(
            json.dumps(self.parameters(local), indent=2, sort_keys=True) + "\n"
        )
        (info / "software_versions.yml").write_text(
            f"{PIPELINE}:\n" + "".join(f"  {k}: {v}\n" for k, v in sorted(tool_versions().items()))
        )
        steps = local_steps(local, index, self.threads)
        await run_steps(steps, rundir, rundir / "logs", info / f"execution_trace_{stamp}.txt", on_process)
        shutil.rmtree(rundir / "tmp", ignore_errors=True)
        return rundir / "results"
