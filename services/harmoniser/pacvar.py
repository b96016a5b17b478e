"""nf-core/pacvar for PacBio samples on the HPC: its samplesheet, command line and output layout.

The sarek backend runs it in place of Sarek when :func:`services.harmoniser.pipelines.hpc_pipeline`
says so, with the same site (profile, executor config, the local iGenomes copy as
``--igenomes_base``, ``NXF_OFFLINE=true``) and the same ``--genome`` (pacvar's iGenomes config
has ``GATK.GRCh38``). The ``wgs`` workflow, demultiplexing skipped (a submission is one
sample's BAM, not a multiplexed SMRT Cell) and DeepVariant (pacvar's default, run with its
PacBio model) as the SNV caller. The parameters, samplesheet rules and output paths it relies
on are transcribed in ``pacvar_schema.json`` with the release and the files they come from;
a unit test holds every command line and samplesheet to them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from services.harmoniser.inputs import SampleReads
from services.harmoniser.nfcore import SamplesheetRules, nextflow_run, rule_breaks, write_checked
from services.harmoniser.pipelines import HpcPipeline

SCHEMA_PATH = Path(__file__).with_name("pacvar_schema.json")
SAMPLESHEET_COLUMNS = ("sample", "bam")
WORKFLOW = "wgs"
SNV_CALLER = "deepvariant"
ALIGNER = "pbmm2"


def pacvar_schema() -> dict[str, object]:
    """The transcribed parameter schema of the pinned release (see the file's ``$comment``)."""
    schema: dict[str, object] = json.loads(SCHEMA_PATH.read_text())
    return schema


def samplesheet_rows(reads: SampleReads) -> list[dict[str, str]]:
    """One row: the sample's one PacBio BAM (``hpc_pipeline`` refused any other shape)."""
    return [{"sample": reads.sample, "bam": lane.bam or ""} for lane in reads.lanes]


def _rules() -> SamplesheetRules:
    """pacvar's input schema, as transcribed: its columns' patterns, one row per sample."""
    items: dict[str, object] = pacvar_schema()["x-samplesheet"]["items"]  # type: ignore[index]
    properties: dict[str, dict[str, str]] = items["properties"]  # type: ignore[assignment]
    required: list[str] = items["required"]  # type: ignore[assignment]
    return SamplesheetRules(
        pipeline="pacvar",
        columns=SAMPLESHEET_COLUMNS,
        required=tuple(required),
        patterns={
            column: (re.compile(rule["pattern"]), f"{column} does not match {rule['pattern']}")
            for column, rule in properties.items()
        },
        unique=("sample",),
        duplicate=lambda key: f"sample {key[0]} appears twice",
    )


def samplesheet_problems(rows: list[dict[str, str]]) -> list[str]:
    """What pacvar would refuse in ``rows``: its input schema's rules, one row per sample."""
    return rule_breaks(rows, _rules())


def write_samplesheet(rows: list[dict[str, str]], path: Path) -> Path:
    return write_checked(rows, path, _rules())


@dataclass(frozen=True)
class PacvarRun:
    """What a pacvar launch needs from the site, the same as Sarek's but for the release."""

    version: str
    profile: str
    config: Path | None
    genome: str
    igenomes_base: str
    nextflow: str = "nextflow"


def nextflow_command(
    run: PacvarRun,
    samplesheet: Path,
    outdir: Path,
    workdir: Path,
    trace: Path,
    *,
    resume: bool,
) -> list[str]:
    """``nextflow run nf-core/pacvar -r <version> -profile <site> --input ... --workflow wgs ...``."""
    command = nextflow_run(
        run.nextflow,
        HpcPipeline.PACVAR.value,
        run.version,
        run.profile,
        workdir=workdir,
        trace=trace,
        config=run.config,
        resume=resume,
    )
    return [
        *command,
        "--input",
        str(samplesheet),
        "--outdir",
        str(outdir),
        "--workflow",
        WORKFLOW,
        "--skip_demultiplexing",
        "--snv_caller",
        SNV_CALLER,
        "--genome",
        run.genome,
        "--igenomes_base",
        run.igenomes_base,
    ]


@dataclass(frozen=True)
class PacvarLayout:
    """Where pacvar 1.0.1 publishes a sample's files (``x-outputs`` of the schema file).

    The aligned, sorted BAM and the SNV VCF with their indexes are required; the phased BAM
    and VCF (HiPhase) and the SV VCF (pbsv, bgzipped) are kept when there.
    """

    sample: str

    def _path(self, key: str) -> str:
        outputs: dict[str, str] = pacvar_schema()["x-outputs"]  # type: ignore[assignment]
        return outputs[key].format(sample=self.sample)

    def required(self) -> list[tuple[str, str]]:
        return [(self._path(key), key) for key in ("bam", "bai", "vcf", "tbi")]

    def optional(self) -> list[tuple[str, str]]:
        return [
            (self._path("phased_bam"), "bam"),
            (self._path("phased_vcf"), "vcf"),
            (self._path("sv_vcf"), "vcf"),
        ]

    reports = ""
    """pacvar has no per-sample reports folder; its MultiQC report covers the run."""
