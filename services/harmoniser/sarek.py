"""The ``sarek`` backend: nf-core/sarek itself, run by Nextflow on the HPC (Slurm or Kubernetes).

It writes Sarek's samplesheet, launches ``nextflow run nf-core/sarek`` with a pinned release,
the site's profile and an executor config (examples beside this module in ``nextflow/``),
follows the run through Nextflow's trace file while it runs and through its exit status
when it ends, and leaves the outputs in Sarek's layout for the shared collector. A relaunch
after a harmoniser restart passes ``-resume``, so finished tasks come from Nextflow's cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from services.harmoniser.inputs import SampleReads
from services.harmoniser.steps import (
    PipelineFailed,
    ProcessHook,
    failed_tasks,
    parse_trace,
    run_script,
    tail,
    trace_summary,
    trace_timestamp,
)
from shared import telemetry
from shared.spreadsheet import SafeDictWriter, formula_risk

log = telemetry.get_logger(__name__)

SAMPLESHEET_COLUMNS = ("patient", "sex", "status", "sample", "lane", "fastq_1", "fastq_2", "bam")

# The rules of Sarek's assets/schema_input.json for the columns we write (step mapping).
NO_SPACES = re.compile(r"^\S+$")
SAMPLESHEET_RULES: dict[str, tuple[re.Pattern[str], str]] = {
    "patient": (NO_SPACES, "ID name must be provided and cannot contain spaces"),
    "sample": (NO_SPACES, "Sample name must be provided and cannot contain spaces"),
    "sex": (NO_SPACES, "Sex cannot contain spaces"),
    "status": (re.compile(r"^(0|1)*$"), "Status can only be 0 or 1"),
    "lane": (NO_SPACES, "Lane cannot contain spaces"),
    "fastq_1": (
        re.compile(r"^\S+\.f(ast)?q\.gz$"),
        "FastQ file for reads 1 cannot contain spaces and must have extension '.fq.gz' or '.fastq.gz'",
    ),
    "fastq_2": (
        re.compile(r"^\S+\.f(ast)?q\.gz$"),
        "FastQ file for reads 2 cannot contain spaces and must have extension '.fq.gz' or '.fastq.gz'",
    ),
    "bam": (re.compile(r"^\S+\.bam$"), "BAM file cannot contain spaces and must have extension '.bam'"),
}
REQUIRED = ("patient", "sample")


def samplesheet_rows(reads: SampleReads) -> list[dict[str, str]]:
    """One row per lane; sex unknown (``NA``) and status normal (``0``): germline samples."""
    return [
        {
            "patient": reads.patient,
            "sex": "NA",
            "status": "0",
            "sample": reads.sample,
            "lane": lane.lane,
            "fastq_1": lane.fastq_1 or "",
            "fastq_2": lane.fastq_2 or "",
            "bam": lane.bam or "",
        }
        for lane in reads.lanes
    ]


def samplesheet_problems(rows: list[dict[str, str]]) -> list[str]:
    """What Sarek would refuse in ``rows``: its schema's rules plus those of ``--step mapping``."""
    problems = []
    seen: set[tuple[str, str]] = set()
    for n, row in enumerate(rows, start=2):  # line numbers, after the header
        for column in REQUIRED:
            if not row.get(column):
                problems.append(f"line {n}: {column} is required")
        for column, value in row.items():
            if column not in SAMPLESHEET_RULES:
                problems.append(f"line {n}: unknown column {column}")
            elif value and not SAMPLESHEET_RULES[column][0].match(value):
                problems.append(f"line {n}: {SAMPLESHEET_RULES[column][1]} ({value!r})")
            elif formula_risk(value):
                # Not quoted as in a finance file: Sarek must see the id as it is. Refused,
                # since a spreadsheet would run it and a tool may take a leading '-' as an option.
                problems.append(f"line {n}: {column} must not start with = + - @, a tab or CR")
        if not row.get("lane"):
            problems.append(f"line {n}: lane is required for --step mapping")
        if bool(row.get("fastq_1")) == bool(row.get("bam")):
            problems.append(f"line {n}: a mapping row has either fastq_1 (and fastq_2) or bam")
        if row.get("fastq_2") and not row.get("fastq_1"):
            problems.append(f"line {n}: fastq_2 without fastq_1")
        key = (row.get("sample", ""), row.get("lane", ""))
        if key in seen:
            problems.append(f"line {n}: lane {key[1]} appears twice for sample {key[0]}")
        seen.add(key)
    return problems


def write_samplesheet(rows: list[dict[str, str]], path: Path) -> Path:
    problems = samplesheet_problems(rows)
    if problems:
        raise PipelineFailed("the samplesheet breaks Sarek's rules: " + "; ".join(problems))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = SafeDictWriter(handle, SAMPLESHEET_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


@dataclass(frozen=True)
class SarekOptions:
    version: str
    profile: str
    config: Path | None
    genome: str
    tools: str
    nextflow: str = "nextflow"
    extra_args: tuple[str, ...] = ()


def nextflow_command(
    options: SarekOptions,
    samplesheet: Path,
    outdir: Path,
    workdir: Path,
    trace: Path,
    *,
    resume: bool,
    long_read: bool,
) -> list[str]:
    """``nextflow run nf-core/sarek -r <version> -profile <site> --input ... --outdir ...``."""
    command = [
        options.nextflow,
        "run",
        "nf-core/sarek",
        "-r",
        options.version,
        "-profile",
        options.profile,
        "-work-dir",
        str(workdir),
        "-with-trace",
        str(trace),
    ]
    if options.config is not None:
        command += ["-c", str(options.config)]
    if resume:
        command.append("-resume")
    command += [
        "--input",
        str(samplesheet),
        "--outdir",
        str(outdir),
        "--genome",
        options.genome,
        "--tools",
        options.tools,
    ]
    if long_read:
        command += ["--aligner", "minimap2"]
    return command + list(options.extra_args)


class SarekBackend:
    """Runs nf-core/sarek through Nextflow; the run folder keeps Nextflow's work dir for -resume."""

    name = "sarek"

    def __init__(self, options: SarekOptions, follow_interval: float = 30.0) -> None:
        self.options = options
        self.follow_interval = follow_interval

    def parameters(self, reads: SampleReads) -> dict[str, object]:
        return {
            "backend": self.name,
            "profile": self.options.profile,
            "config": str(self.options.config) if self.options.config else None,
            "genome": self.options.genome,
            "tools": self.options.tools,
            "aligner": "minimap2" if any(lane.long_read for lane in reads.lanes) else "bwa-mem",
            "extra_args": list(self.options.extra_args),
        }

    async def run(self, reads: SampleReads, rundir: Path, resume: bool, on_process: ProcessHook) -> Path:
        outdir = rundir / "results"
        samplesheet = write_samplesheet(samplesheet_rows(reads), rundir / "samplesheet.csv")
        trace = outdir / "pipeline_info" / f"execution_trace_{trace_timestamp()}.txt"
        command = nextflow_command(
            self.options,
            samplesheet,
            outdir,
            rundir / "work",
            trace,
            resume=resume,
            long_read=any(lane.long_read for lane in reads.lanes),
        )
        console = rundir / "nextflow.log"
        script = " ".join(shlex.quote(c) for c in command)
        run = asyncio.ensure_future(run_script(script, rundir, console, on_process, shell_options="set -eu"))
        started = time.monotonic()
        while not run.done():
            await asyncio.wait({run}, timeout=self.follow_interval)
            summary = trace_summary(parse_trace(trace))
            log.info(
                "sarek progress",
                sample=reads.sample,
                tasks=summary,
                elapsed_s=round(time.monotonic() - started),
            )
        code = run.result()
        records = parse_trace(trace)
        if code != 0:
            failed = failed_tasks(records)
            raise PipelineFailed(
                f"nextflow exited with status {code}"
                + (f"; failed tasks: {', '.join(failed)}" if failed else ""),
                tail(console),
            )
        with contextlib.suppress(Exception):
            log.info("sarek finished", sample=reads.sample, tasks=trace_summary(records))
        return outdir
