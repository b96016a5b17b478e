"""The ``sarek`` backend: nf-core/sarek itself, run by Nextflow on the HPC (Slurm or Kubernetes).

It writes Sarek's samplesheet, launches ``nextflow run nf-core/sarek`` with a pinned release,
the site's profile and an executor config (examples beside this module in ``nextflow/``),
follows the run through Nextflow's trace file while it runs and through its exit status
when it ends, and leaves the outputs in Sarek's layout for the shared collector. A relaunch
after a harmoniser restart passes ``-resume``, so finished tasks come from Nextflow's cache.

Sarek validates its parameters at start-up, so the command line keeps to the pinned
release's schema; the names, enums and patterns it relies on are transcribed beside this
module (``sarek_schema.json``, with the release and the files they come from) and a unit
test holds every command line the backend can make to them. bcftools calling is Sarek's
``mpileup`` tool. The references come from a local iGenomes copy (``--igenomes_base``):
NGC's HPC is offline, and Sarek's default base is a public S3 bucket; Nextflow runs with
``NXF_OFFLINE=true``, so it neither pulls the pipeline nor fetches nf-core's institutional
configs (the pinned release, its containers and the nf-schema plugin are put on the HPC
beforehand).

Long reads do not go to Sarek: its aligner enum has no long-read aligner, and a ``bam`` row
at ``--step mapping`` is taken for an unaligned short-read BAM. Which pipeline a sample goes
to is decided in one place, :func:`services.harmoniser.pipelines.hpc_pipeline`, from the
platform: PacBio samples are run by nf-core/pacvar on the same site and reference base
(``services.harmoniser.pacvar``), ONT samples are refused on the HPC before anything is
written or launched (the embedded ``local`` backend takes them, with minimap2).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from services.harmoniser import pacvar
from services.harmoniser.inputs import SampleReads
from services.harmoniser.layout import OutputLayout, SampleLayout
from services.harmoniser.nfcore import SamplesheetRules, nextflow_run, rule_breaks, write_checked
from services.harmoniser.pipelines import HpcPipeline, hpc_pipeline
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
ALIGNER = "bwa-mem"


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


def _mapping_rules(n: int, row: dict[str, str]) -> list[str]:
    """Sarek's rules of a row at ``--step mapping``."""
    problems = []
    if not row.get("lane"):
        problems.append(f"line {n}: lane is required for --step mapping")
    if bool(row.get("fastq_1")) == bool(row.get("bam")):
        problems.append(f"line {n}: a mapping row has either fastq_1 (and fastq_2) or bam")
    if row.get("fastq_2") and not row.get("fastq_1"):
        problems.append(f"line {n}: fastq_2 without fastq_1")
    return problems


RULES = SamplesheetRules(
    pipeline="Sarek",
    columns=SAMPLESHEET_COLUMNS,
    required=("patient", "sample"),
    patterns=SAMPLESHEET_RULES,
    unique=("sample", "lane"),
    duplicate=lambda key: f"lane {key[1]} appears twice for sample {key[0]}",
    row_rules=_mapping_rules,
)


def samplesheet_problems(rows: list[dict[str, str]]) -> list[str]:
    """What Sarek would refuse in ``rows``: its schema's rules plus those of ``--step mapping``."""
    return rule_breaks(rows, RULES)


def write_samplesheet(rows: list[dict[str, str]], path: Path) -> Path:
    return write_checked(rows, path, RULES)


SCHEMA_PATH = Path(__file__).with_name("sarek_schema.json")
REMOTE_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def sarek_schema() -> dict[str, object]:
    """The transcribed parameter schema of the pinned release (see the file's ``$comment``)."""
    schema: dict[str, object] = json.loads(SCHEMA_PATH.read_text())
    return schema


def offline_reference_base(value: str | Path | None) -> str:
    """The local iGenomes copy Sarek reads its references from, as ``--igenomes_base`` takes it.

    Refused when unset, relative or a URL: the HPC is offline, so a remote base (Sarek's
    default is ``s3://ngi-igenomes/igenomes/``) fails at the first reference file.
    """
    text = "" if value is None else str(value).strip()
    if not text:
        raise ValueError(
            "the sarek backend needs GENOMHUB_HARMONISER_SAREK_IGENOMES_BASE: the HPC is offline, "
            "so Sarek must read its references from a local copy of iGenomes"
        )
    if REMOTE_PREFIX.match(text):
        raise ValueError(f"GENOMHUB_HARMONISER_SAREK_IGENOMES_BASE is a URL ({text!r}); the HPC is offline")
    if not text.startswith("/") or re.search(r"\s", text):
        raise ValueError(
            f"GENOMHUB_HARMONISER_SAREK_IGENOMES_BASE must be an absolute path without spaces, not {text!r}"
        )
    return text.rstrip("/") + "/"


@dataclass(frozen=True)
class SarekOptions:
    version: str
    profile: str
    config: Path | None
    genome: str
    tools: str
    igenomes_base: str
    nextflow: str = "nextflow"
    extra_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Refuse at start-up what Sarek would refuse at every launch."""
        object.__setattr__(self, "igenomes_base", offline_reference_base(self.igenomes_base))
        properties: dict[str, dict[str, str]] = sarek_schema()["properties"]  # type: ignore[assignment]
        if not self.tools or not re.search(properties["tools"]["pattern"], self.tools):
            raise ValueError(
                f"GENOMHUB_HARMONISER_SAREK_TOOLS {self.tools!r} is not a list of Sarek's tools "
                "(bcftools calling is 'mpileup')"
            )
        if not self.genome.strip():
            raise ValueError("GENOMHUB_HARMONISER_SAREK_GENOME is empty")


def nextflow_command(
    options: SarekOptions,
    samplesheet: Path,
    outdir: Path,
    workdir: Path,
    trace: Path,
    *,
    resume: bool,
) -> list[str]:
    """``nextflow run nf-core/sarek -r <version> -profile <site> --input ... --outdir ...``."""
    command = nextflow_run(
        options.nextflow,
        "nf-core/sarek",
        options.version,
        options.profile,
        workdir=workdir,
        trace=trace,
        config=options.config,
        resume=resume,
    )
    command += [
        "--input",
        str(samplesheet),
        "--outdir",
        str(outdir),
        "--step",
        "mapping",
        "--genome",
        options.genome,
        "--igenomes_base",
        options.igenomes_base,
        "--tools",
        options.tools,
        "--aligner",
        ALIGNER,
    ]
    return command + list(options.extra_args)


# Nextflow's switch for a machine without the internet: no pull or update check of the
# pipeline (it must be pulled beforehand) and, in nf-core's template, no fetch of the
# institutional configs from GitHub.
OFFLINE_ENVIRONMENT = (("NXF_OFFLINE", "true"),)


def launch_script(command: list[str]) -> str:
    """The shell script that runs ``command`` with Nextflow told it is offline."""
    exports = "".join(f"export {name}={shlex.quote(value)}\n" for name, value in OFFLINE_ENVIRONMENT)
    return exports + " ".join(shlex.quote(c) for c in command)


def command_parameters(
    command: list[str], schema: dict[str, object] | None = None
) -> tuple[dict[str, list[str]], dict[str, str | bool]]:
    """Nextflow's own options and the pipeline's parameters of a ``nextflow run`` command line.

    As Nextflow reads them: ``-name`` options before the parameters, ``--name value``
    parameters, a ``--name`` followed by another option (or nothing) a boolean ``true``.
    Arity of the options is the schema's ``x-nextflow-options`` (Sarek's unless ``schema``
    is given); an option it does not name is an error, so a typo cannot pass for a parameter.
    """
    schema = schema or sarek_schema()
    arity: dict[str, int] = schema["x-nextflow-options"]  # type: ignore[assignment]
    pipeline = schema["x-pipeline"]
    if command[1:3] != ["run", pipeline]:
        raise ValueError(f"not a nextflow run of {pipeline}: {command[:3]}")
    options: dict[str, list[str]] = {}
    params: dict[str, str | bool] = {}
    i = 3
    while i < len(command):
        token = command[i]
        if token.startswith("--"):
            name = token[2:]
            if name in params:
                raise ValueError(f"parameter --{name} given twice")
            following = command[i + 1] if i + 1 < len(command) else None
            if following is None or following.startswith("-"):
                params[name] = True
                i += 1
            else:
                params[name] = following
                i += 2
        elif token.startswith("-"):
            if token not in arity:
                raise ValueError(f"unknown Nextflow option {token}")
            n = arity[token]
            options[token] = command[i + 1 : i + 1 + n]
            i += 1 + n
        else:
            raise ValueError(f"stray argument {token!r}")
    return options, params


class SarekBackend:
    """Runs nf-core/sarek (nf-core/pacvar for PacBio samples) through Nextflow on the HPC; the run
    folder keeps Nextflow's work dir for -resume."""

    name = "sarek"

    def __init__(self, options: SarekOptions, pacvar_version: str, follow_interval: float = 30.0) -> None:
        self.options = options
        self.pacvar = pacvar.PacvarRun(
            version=pacvar_version,
            profile=options.profile,
            config=options.config,
            genome=options.genome,
            igenomes_base=options.igenomes_base,
            nextflow=options.nextflow,
        )
        self.follow_interval = follow_interval

    def layout(self, reads: SampleReads) -> OutputLayout:
        if hpc_pipeline(reads) is HpcPipeline.PACVAR:
            return pacvar.PacvarLayout(reads.sample)
        return SampleLayout(reads.sample)

    def pipeline(self, reads: SampleReads) -> tuple[str, str]:
        if hpc_pipeline(reads) is HpcPipeline.PACVAR:
            return HpcPipeline.PACVAR.value, self.pacvar.version
        return HpcPipeline.SAREK.value, self.options.version

    def parameters(self, reads: SampleReads) -> dict[str, object]:
        if hpc_pipeline(reads) is HpcPipeline.PACVAR:
            return {
                "backend": self.name,
                "pipeline": HpcPipeline.PACVAR.value,
                "profile": self.pacvar.profile,
                "config": str(self.pacvar.config) if self.pacvar.config else None,
                "genome": self.pacvar.genome,
                "igenomes_base": self.pacvar.igenomes_base,
                "workflow": pacvar.WORKFLOW,
                "snv_caller": pacvar.SNV_CALLER,
                "aligner": pacvar.ALIGNER,
            }
        return {
            "backend": self.name,
            "profile": self.options.profile,
            "config": str(self.options.config) if self.options.config else None,
            "genome": self.options.genome,
            "igenomes_base": self.options.igenomes_base,
            "tools": self.options.tools,
            "aligner": ALIGNER,
            "extra_args": list(self.options.extra_args),
        }

    def command(self, reads: SampleReads, rundir: Path, trace: Path, *, resume: bool) -> list[str]:
        """Write the samplesheet of the pipeline that takes ``reads`` and return its command line;
        refused (:class:`LongReadsRefused`) before anything is written when none takes them."""
        pipeline = hpc_pipeline(reads)
        outdir, samplesheet = rundir / "results", rundir / "samplesheet.csv"
        if pipeline is HpcPipeline.PACVAR:
            pacvar.write_samplesheet(pacvar.samplesheet_rows(reads), samplesheet)
            return pacvar.nextflow_command(
                self.pacvar, samplesheet, outdir, rundir / "work", trace, resume=resume
            )
        write_samplesheet(samplesheet_rows(reads), samplesheet)
        return nextflow_command(self.options, samplesheet, outdir, rundir / "work", trace, resume=resume)

    async def run(self, reads: SampleReads, rundir: Path, resume: bool, on_process: ProcessHook) -> Path:
        outdir = rundir / "results"
        trace = outdir / "pipeline_info" / f"execution_trace_{trace_timestamp()}.txt"
        command = self.command(reads, rundir, trace, resume=resume)
        console = rundir / "nextflow.log"
        script = launch_script(command)
        run = asyncio.ensure_future(run_script(script, rundir, console, on_process, shell_options="set -eu"))
        started = time.monotonic()
        while not run.done():
            await asyncio.wait({run}, timeout=self.follow_interval)
            summary = trace_summary(parse_trace(trace))
            log.info(
                "nextflow progress",
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
            log.info("nextflow finished", sample=reads.sample, tasks=trace_summary(records))
        return outdir
