"""Every command line the sarek backend can make, held to the pinned release's parameter schema.

The schema is the transcription beside the backend (``sarek_schema.json``); Sarek itself
validates the same names, enums and patterns at start-up and aborts on a mismatch.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.harmoniser.inputs import Lane, SampleReads
from services.harmoniser.pipelines import LongReadsRefused
from services.harmoniser.sarek import (
    SarekBackend,
    SarekOptions,
    command_parameters,
    launch_script,
    nextflow_command,
    offline_reference_base,
    samplesheet_rows,
    sarek_schema,
)
from shared.config import HarmoniserSettings

SCHEMA = sarek_schema()
PARAMETERS = jsonschema.Draft7Validator({k: v for k, v in SCHEMA.items() if not k.startswith("x-")})
SAMPLESHEET = jsonschema.Draft7Validator(SCHEMA["x-samplesheet"])
PROFILE = re.compile(r"^[A-Za-z0-9_-]+(,[A-Za-z0-9_-]+)*$")
RELEASE = re.compile(r"^\d+\.\d+\.\d+$")

DEFAULTS = HarmoniserSettings()
TOOLS = (DEFAULTS.sarek_tools, "mpileup,haplotypecaller", "deepvariant,mpileup,strelka")
GENOMES = (DEFAULTS.sarek_genome, "GATK.GRCh37")
PROFILES = (DEFAULTS.sarek_profile, "docker", "singularity,ngc")
CONFIGS = (DEFAULTS.sarek_config, Path("/sarek-work/executor.config"))
BASES = ("/references/igenomes", "/sarek-work/igenomes/")

SHORT_FASTQ = SampleReads(
    "P1",
    "S1",
    (
        Lane("1", "/d/S1_L001_R1.fastq.gz", "/d/S1_L001_R2.fastq.gz", flowcell="HXXX"),
        Lane("2", "/d/S1_L002_R1.fq.gz", "/d/S1_L002_R2.fq.gz", flowcell="HXXX"),
    ),
)
SHORT_UBAM = SampleReads("P2", "S2", (Lane("1", bam="/d/S2.unaligned.bam", platform="ILLUMINA"),))


def problems(command: list[str], version: str) -> list[str]:
    options, params = command_parameters(command)
    found = [
        f"{'/'.join(map(str, e.absolute_path)) or 'params'}: {e.message}"
        for e in PARAMETERS.iter_errors(params)
    ]
    if options.get("-r") != [version] or not RELEASE.match(version):
        found.append(f"-r {options.get('-r')} is not the pinned release {version}")
    if not PROFILE.match(options.get("-profile", [""])[0]):
        found.append(f"-profile {options.get('-profile')} is not a list of profile names")
    return found


@pytest.mark.parametrize(
    ("tools", "genome", "profile", "config", "base", "resume"),
    list(itertools.product(TOOLS, GENOMES, PROFILES, CONFIGS, BASES, (False, True))),
)
def test_every_command_line_passes_sareks_schema(
    tools: str, genome: str, profile: str, config: Path | None, base: str, resume: bool, tmp_path: Path
) -> None:
    options = SarekOptions(DEFAULTS.sarek_version, profile, config, genome, tools, base)
    command = nextflow_command(
        options,
        tmp_path / "samplesheet.csv",
        tmp_path / "results",
        tmp_path / "work",
        tmp_path / "results" / "pipeline_info" / "execution_trace.txt",
        resume=resume,
    )
    assert problems(command, DEFAULTS.sarek_version) == []
    _, params = command_parameters(command)
    assert params["igenomes_base"] == base.rstrip("/") + "/"
    assert params["tools"] == tools and params["step"] == "mapping"


def test_the_schema_check_catches_what_sarek_refuses(tmp_path: Path) -> None:
    """The check is not vacuous: the old default, a long-read aligner and a typo all fail it."""
    options = SarekOptions("3.5.1", "singularity", None, "GATK.GRCh38", "mpileup", "/references/igenomes")
    command = nextflow_command(
        options, tmp_path / "s.csv", tmp_path / "o", tmp_path / "w", tmp_path / "t", resume=False
    )
    tools = command.index("--tools") + 1
    aligner = command.index("--aligner") + 1
    assert any("tools" in p for p in problems([*command[:tools], "bcftools", *command[tools + 1 :]], "3.5.1"))
    assert any(
        "aligner" in p for p in problems([*command[:aligner], "minimap2", *command[aligner + 1 :]], "3.5.1")
    )
    assert any("igenome_base" in p for p in problems([*command, "--igenome_base", "/x"], "3.5.1"))
    assert any(
        "input" in p for p in problems([*command[: command.index("--input")], "--outdir", "/o"], "3.5.1")
    )
    with pytest.raises(ValueError, match="unknown Nextflow option"):
        command_parameters([*command, "-resum"])


@pytest.mark.parametrize("reads", [SHORT_FASTQ, SHORT_UBAM], ids=["fastq-lanes", "short-read-ubam"])
def test_every_samplesheet_passes_sareks_input_schema(reads: SampleReads) -> None:
    rows = samplesheet_rows(reads)
    assert [e.message for e in SAMPLESHEET.iter_errors(rows)] == []
    assert not SAMPLESHEET.is_valid([rows[0] | {"sample": "S 1"}])


def test_the_default_settings_make_a_backend_sarek_accepts() -> None:
    """``--tools bcftools`` (the old default) is not one of Sarek's tools: refused at start-up."""
    assert DEFAULTS.sarek_tools == "mpileup"
    with pytest.raises(ValueError, match="mpileup"):
        SarekOptions("3.5.1", "singularity", None, "GATK.GRCh38", "bcftools", "/references/igenomes")
    with pytest.raises(ValueError, match="mpileup"):
        SarekOptions("3.5.1", "singularity", None, "GATK.GRCh38", "mpileup,", "/references/igenomes")


@pytest.mark.parametrize(
    ("base", "error"),
    [
        ("", "needs GENOMHUB_HARMONISER_SAREK_IGENOMES_BASE"),
        (None, "needs GENOMHUB_HARMONISER_SAREK_IGENOMES_BASE"),
        ("s3://ngi-igenomes/igenomes/", "is a URL"),
        ("https://example.org/igenomes", "is a URL"),
        ("igenomes", "absolute path"),
        ("/data/i genomes", "absolute path"),
    ],
)
def test_the_reference_base_is_local(base: str | None, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        offline_reference_base(base)


SEGMENT = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Zs", "Cc"), blacklist_characters="/"))


@given(st.lists(SEGMENT.filter(bool), min_size=1, max_size=5), st.booleans())
def test_an_absolute_local_path_is_taken_as_the_reference_base(segments: list[str], slash: bool) -> None:
    path = "/" + "/".join(segments) + ("/" if slash else "")
    base = offline_reference_base(path)
    assert base == path.rstrip("/") + "/"
    assert PARAMETERS.is_valid({"input": "/s.csv", "outdir": "/o", "step": "mapping", "igenomes_base": base})


@given(st.text(max_size=40))
def test_whatever_is_taken_as_the_reference_base_is_local(text: str) -> None:
    try:
        base = offline_reference_base(text)
    except ValueError:
        return
    assert base.startswith("/") and base.endswith("/") and not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", base)
    assert not any(c.isspace() for c in base)


@pytest.mark.parametrize("scheme", ["s3", "gs", "az", "http", "https", "ftp", "file"])
def test_no_url_is_taken_as_the_reference_base(scheme: str) -> None:
    with pytest.raises(ValueError, match="URL"):
        offline_reference_base(f"{scheme}://host/igenomes/")


def test_the_sarek_backend_needs_a_local_reference_base() -> None:
    from services.harmoniser.app import make_harmoniser

    with pytest.raises(ValueError, match="IGENOMES_BASE"):
        make_harmoniser(HarmoniserSettings(backend="sarek"))
    harmoniser = make_harmoniser(
        HarmoniserSettings(backend="sarek", sarek_igenomes_base="/sarek-work/igenomes")
    )
    assert isinstance(harmoniser.backend, SarekBackend)
    assert harmoniser.backend.options.igenomes_base == "/sarek-work/igenomes/"


@pytest.mark.parametrize(
    "lanes",
    [
        (Lane("1", bam="/d/L1.bam", platform="ONT"),),
        (Lane("1", "/d/L1.fastq.gz", platform="PACBIO"),),
        (Lane("1", bam="/d/L1a.bam", platform="PACBIO"), Lane("2", bam="/d/L1b.bam", platform="PACBIO")),
        (Lane("1", bam="/d/L1.bam", platform="PACBIO"), Lane("2", "/d/L1_R1.fastq.gz", "/d/L1_R2.fastq.gz")),
    ],
    ids=["ont", "pacbio-fastq", "two-pacbio-bams", "mixed"],
)
def test_reads_no_hpc_pipeline_takes_are_refused_before_anything_is_written(
    lanes: tuple[Lane, ...], tmp_path: Path
) -> None:
    import asyncio

    reads = SampleReads("P3", "L1", lanes)
    backend = SarekBackend(
        SarekOptions("3.5.1", "singularity", None, "GATK.GRCh38", "mpileup", "/references/igenomes"), "1.0.1"
    )
    with pytest.raises(LongReadsRefused, match="sample L1"):
        asyncio.run(backend.run(reads, tmp_path / "run", False, lambda _pgid: None))
    assert not (tmp_path / "run").exists()


def test_a_short_read_ubam_goes_to_sarek_as_short_reads() -> None:
    [lane] = SHORT_UBAM.lanes
    assert not lane.long_read
    backend = SarekBackend(
        SarekOptions("3.5.1", "singularity", None, "GATK.GRCh38", "mpileup", "/references/igenomes"), "1.0.1"
    )
    assert backend.parameters(SHORT_UBAM)["aligner"] == "bwa-mem"


def test_nextflow_is_told_it_is_offline(tmp_path: Path) -> None:
    options = SarekOptions("3.5.1", "singularity", None, "GATK.GRCh38", "mpileup", "/references/igenomes")
    command = nextflow_command(
        options, tmp_path / "s.csv", tmp_path / "o", tmp_path / "w", tmp_path / "t", resume=False
    )
    script = launch_script(command)
    assert script.splitlines()[0] == "export NXF_OFFLINE=true"
    assert script.splitlines()[1].startswith("nextflow run nf-core/sarek -r 3.5.1 ")
