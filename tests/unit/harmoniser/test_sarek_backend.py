"""The sarek backend without Nextflow: its samplesheet against Sarek's rules, its command line."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from services.harmoniser.inputs import Lane, SampleReads
from services.harmoniser.sarek import (
    SAMPLESHEET_COLUMNS,
    SarekOptions,
    nextflow_command,
    samplesheet_problems,
    samplesheet_rows,
    write_samplesheet,
)
from services.harmoniser.steps import PipelineFailed
from tests.unit.harmoniser.conftest import LocalRun

OPTIONS = SarekOptions(
    version="3.5.1",
    profile="singularity",
    config=Path("services/harmoniser/nextflow/slurm.config"),
    genome="GATK.GRCh38",
    tools="mpileup",
    igenomes_base="/references/igenomes",
)


def test_samplesheet_of_a_real_sample_follows_sareks_schema(local_run: LocalRun, tmp_path: Path) -> None:
    path = write_samplesheet(samplesheet_rows(local_run.reads), tmp_path / "samplesheet.csv")
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == SAMPLESHEET_COLUMNS
    [row] = rows
    assert row["patient"] == "P1" and row["sample"] == "S1" and row["lane"] == "1"
    assert (row["sex"], row["status"], row["bam"]) == ("NA", "0", "")
    assert row["fastq_1"].endswith("S1_R1.fastq.gz") and row["fastq_2"].endswith("S1_R2.fastq.gz")
    assert samplesheet_problems(rows) == []


def test_samplesheet_rows_for_lanes_and_long_reads() -> None:
    reads = SampleReads(
        "P1",
        "S1",
        (
            Lane("1", "/d/S1_L001_R1.fastq.gz", "/d/S1_L001_R2.fastq.gz", flowcell="HXXX"),
            Lane("2", "/d/S1_L002_R1.fq.gz", "/d/S1_L002_R2.fq.gz", flowcell="HXXX"),
            Lane("3", bam="/d/S1.ont.bam", platform="ONT"),
        ),
    )
    rows = samplesheet_rows(reads)
    assert [r["lane"] for r in rows] == ["1", "2", "3"]
    assert rows[2]["bam"] == "/d/S1.ont.bam" and rows[2]["fastq_1"] == ""
    assert samplesheet_problems(rows) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"sample": "S 1"}, "Sample name must be provided and cannot contain spaces"),
        ({"patient": ""}, "patient is required"),
        ({"status": "2"}, "Status can only be 0 or 1"),
        ({"fastq_1": "/d/S1_R1.fastq"}, "must have extension '.fq.gz' or '.fastq.gz'"),
        ({"lane": ""}, "lane is required"),
        ({"bam": "/d/S1.bam"}, "either fastq_1 (and fastq_2) or bam"),
        ({"sample": "=HYPERLINK(1)"}, "sample must not start with = + - @"),
        ({"patient": "-P1"}, "patient must not start with = + - @"),
        ({"sample": "+S1"}, "sample must not start with = + - @"),
        ({"patient": "@P1"}, "patient must not start with = + - @"),
    ],
)
def test_samplesheet_rule_breaks_are_named(change: dict[str, str], problem: str, tmp_path: Path) -> None:
    row = {c: "" for c in SAMPLESHEET_COLUMNS} | {
        "patient": "P1",
        "sex": "NA",
        "status": "0",
        "sample": "S1",
        "lane": "1",
        "fastq_1": "/d/S1_R1.fastq.gz",
        "fastq_2": "/d/S1_R2.fastq.gz",
    }
    problems = samplesheet_problems([row | change])
    assert any(problem in p for p in problems), problems
    with pytest.raises(PipelineFailed):
        write_samplesheet([row | change], tmp_path / "s.csv")


def test_duplicate_lanes_are_refused() -> None:
    row = {"patient": "P1", "sample": "S1", "lane": "1", "fastq_1": "/d/a_R1.fastq.gz"}
    assert any("appears twice" in p for p in samplesheet_problems([row, dict(row)]))


def test_nextflow_command_line(tmp_path: Path) -> None:
    sheet, out, work, trace = (tmp_path / n for n in ("samplesheet.csv", "results", "work", "trace.txt"))
    command = nextflow_command(OPTIONS, sheet, out, work, trace, resume=False)
    assert command[:7] == ["nextflow", "run", "nf-core/sarek", "-r", "3.5.1", "-profile", "singularity"]
    text = " ".join(command)
    for part in (
        f"--input {sheet}",
        f"--outdir {out}",
        "--step mapping",
        "--genome GATK.GRCh38",
        "--igenomes_base /references/igenomes/",
        "--tools mpileup",
        "--aligner bwa-mem",
        f"-with-trace {trace}",
        f"-work-dir {work}",
        "-c services/harmoniser/nextflow/slurm.config",
    ):
        assert part in text
    assert "-resume" not in command and "minimap2" not in command
    again = nextflow_command(OPTIONS, sheet, out, work, trace, resume=True)
    assert "-resume" in again


def test_example_executor_configs_exist() -> None:
    folder = Path(__file__).resolve().parents[3] / "services" / "harmoniser" / "nextflow"
    assert "executor       = 'slurm'" in (folder / "slurm.config").read_text()
    assert "executor      = 'k8s'" in (folder / "kubernetes.config").read_text()


def test_a_run_that_cannot_start_fails_with_nextflows_exit_status_and_log(
    local_run: LocalRun, tmp_path: Path
) -> None:
    import asyncio

    from services.harmoniser.sarek import SarekBackend

    backend = SarekBackend(
        SarekOptions(
            "3.5.1",
            "singularity",
            None,
            "GATK.GRCh38",
            "mpileup",
            "/references/igenomes",
            nextflow="nextflow-not-installed",
        ),
        "1.0.1",
        follow_interval=0.1,
    )
    with pytest.raises(PipelineFailed) as failed:
        asyncio.run(backend.run(local_run.reads, tmp_path, False, lambda _pgid: None))
    assert "nextflow exited with status 127" in str(failed.value)
    assert "nextflow-not-installed" in failed.value.log_tail
    assert (tmp_path / "samplesheet.csv").read_text().startswith("patient,sex,status,sample,lane,fastq_1")


def test_the_service_builds_the_configured_backend() -> None:
    from services.harmoniser.app import make_harmoniser
    from shared.config import HarmoniserSettings

    harmoniser = make_harmoniser(
        HarmoniserSettings(
            backend="sarek",
            sarek_version="3.5.1",
            sarek_igenomes_base="/references/igenomes",
        )
    )
    assert (harmoniser.backend.name, harmoniser.pipeline, harmoniser.pipeline_version) == (
        "sarek",
        "nf-core/sarek",
        "3.5.1",
    )
    assert harmoniser.reference == "GATK.GRCh38"
