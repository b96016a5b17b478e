"""Every nf-core/pacvar command line and samplesheet the sarek backend can make passes pacvar's schema,
and the one decision sends each kind of reads to the pipeline that takes them.

The schema is the transcription beside the backend (``pacvar_schema.json``, release and files
named in it); pacvar itself validates its parameters and samplesheet at start-up with nf-schema.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.harmoniser import pacvar
from services.harmoniser.app import make_harmoniser
from services.harmoniser.inputs import Lane, SampleReads
from services.harmoniser.layout import CollectError, find_outputs
from services.harmoniser.pipelines import HpcPipeline, LongReadsRefused, hpc_pipeline
from services.harmoniser.sarek import SarekBackend, SarekOptions, command_parameters, launch_script
from shared.config import HarmoniserSettings
from shared.platforms import PLATFORMS, Technology

SCHEMA = pacvar.pacvar_schema()
PARAMETERS = jsonschema.Draft7Validator({k: v for k, v in SCHEMA.items() if not k.startswith("x-")})
SAMPLESHEET = jsonschema.Draft7Validator(SCHEMA["x-samplesheet"])
PROFILE = re.compile(r"^[A-Za-z0-9_-]+(,[A-Za-z0-9_-]+)*$")
DEFAULTS = HarmoniserSettings()

PACBIO = SampleReads("P4", "H1", (Lane("1", bam="/d/H1.hifi_reads.bam", platform="PACBIO"),))
ONT = SampleReads("P5", "N1", (Lane("1", bam="/d/N1.bam", platform="ONT"),))
SHORT_UBAM = SampleReads("P2", "S2", (Lane("1", bam="/d/S2.unaligned.bam", platform="ILLUMINA"),))


def backend(
    profile: str = "singularity",
    config: Path | None = None,
    genome: str = "GATK.GRCh38",
    base: str = "/ref/ig",
) -> SarekBackend:
    options = SarekOptions(DEFAULTS.sarek_version, profile, config, genome, "mpileup", base)
    return SarekBackend(options, DEFAULTS.pacvar_version)


def problems(command: list[str]) -> list[str]:
    options, params = command_parameters(command, SCHEMA)
    found = [
        f"{'/'.join(map(str, e.absolute_path)) or 'params'}: {e.message}"
        for e in PARAMETERS.iter_errors(params)
    ]
    if options.get("-r") != [SCHEMA["x-release"]]:
        found.append(f"-r {options.get('-r')} is not the transcribed release {SCHEMA['x-release']}")
    if not PROFILE.match(options.get("-profile", [""])[0]):
        found.append(f"-profile {options.get('-profile')} is not a list of profile names")
    return found


@pytest.mark.parametrize(
    ("profile", "config", "genome", "base", "resume"),
    list(
        itertools.product(
            (DEFAULTS.sarek_profile, "docker", "singularity,ngc"),
            (DEFAULTS.sarek_config, Path("/sarek-work/executor.config")),
            (DEFAULTS.sarek_genome, "GATK.GRCh37"),
            ("/references/igenomes", "/sarek-work/igenomes/"),
            (False, True),
        )
    ),
)
def test_every_pacvar_command_line_passes_pacvars_schema(
    profile: str, config: Path | None, genome: str, base: str, resume: bool, tmp_path: Path
) -> None:
    run = backend(profile, config, genome, base)
    command = run.command(PACBIO, tmp_path / "run", tmp_path / "run" / "trace.txt", resume=resume)
    assert command[1:3] == ["run", "nf-core/pacvar"]
    assert problems(command) == []
    _, params = command_parameters(command, SCHEMA)
    assert params["igenomes_base"] == base.rstrip("/") + "/"
    assert params["workflow"] == "wgs" and params["skip_demultiplexing"] is True
    assert params["genome"] == genome and params["input"] == str(tmp_path / "run" / "samplesheet.csv")
    rows = (tmp_path / "run" / "samplesheet.csv").read_text().splitlines()
    assert rows == ["sample,bam", "H1,/d/H1.hifi_reads.bam"]


def test_the_pinned_release_is_the_transcribed_one() -> None:
    assert DEFAULTS.pacvar_version == SCHEMA["x-release"] == "1.0.1"


def test_the_schema_check_catches_what_pacvar_refuses(tmp_path: Path) -> None:
    """Not vacuous: an unknown parameter, a wrong enum, a missing input and a typo all fail."""
    command = backend().command(PACBIO, tmp_path, tmp_path / "t", resume=False)
    workflow = command.index("--workflow") + 1
    assert any("workflow" in p for p in problems([*command[:workflow], "germline", *command[workflow + 1 :]]))
    assert any("aligner" in p for p in problems([*command, "--aligner", "minimap2"]))
    assert any("input" in p for p in problems([*command[: command.index("--input")], "--outdir", "/o"]))
    with pytest.raises(ValueError, match="unknown Nextflow option"):
        command_parameters([*command, "-resum"], SCHEMA)
    with pytest.raises(ValueError, match="not a nextflow run of nf-core/pacvar"):
        command_parameters(
            backend().command(SHORT_UBAM, tmp_path / "s", tmp_path / "t", resume=False), SCHEMA
        )


def test_every_pacvar_samplesheet_passes_its_input_schema() -> None:
    rows = pacvar.samplesheet_rows(PACBIO)
    assert [e.message for e in SAMPLESHEET.iter_errors(rows)] == []
    assert pacvar.samplesheet_problems(rows) == []
    assert not SAMPLESHEET.is_valid([rows[0] | {"sample": "H 1"}])
    assert pacvar.samplesheet_problems([rows[0] | {"bam": "/d/H1.fastq.gz"}])
    assert pacvar.samplesheet_problems([rows[0] | {"sample": "-H1"}])


def test_nextflow_runs_pacvar_offline(tmp_path: Path) -> None:
    script = launch_script(backend().command(PACBIO, tmp_path, tmp_path / "t", resume=False))
    assert script.splitlines()[0] == "export NXF_OFFLINE=true"
    assert script.splitlines()[1].startswith("nextflow run nf-core/pacvar -r 1.0.1 ")


def test_the_provenance_names_the_pipeline_that_ran() -> None:
    run = backend()
    assert run.pipeline(PACBIO) == ("nf-core/pacvar", "1.0.1")
    assert run.pipeline(SHORT_UBAM) == ("nf-core/sarek", DEFAULTS.sarek_version)
    assert run.parameters(PACBIO)["aligner"] == "pbmm2"
    assert run.parameters(SHORT_UBAM)["aligner"] == "bwa-mem"


def test_the_configured_backend_runs_pacvar_for_pacbio(tmp_path: Path) -> None:
    harmoniser = make_harmoniser(
        HarmoniserSettings(backend="sarek", sarek_igenomes_base="/sarek-work/igenomes")
    )
    assert isinstance(harmoniser.backend, SarekBackend)
    command = harmoniser.backend.command(PACBIO, tmp_path, tmp_path / "t", resume=False)
    assert problems(command) == []
    assert command[command.index("--igenomes_base") + 1] == "/sarek-work/igenomes/"


PLATFORM_NAMES = sorted(PLATFORMS)


@given(platform=st.sampled_from(PLATFORM_NAMES), bam=st.booleans())
def test_one_place_sends_each_platform_to_the_pipeline_that_takes_it(platform: str, bam: bool) -> None:
    """Decided by the platform, never the container: a short-read uBAM goes to Sarek, PacBio
    BAMs to pacvar, and ONT (as BAM or FASTQ) and PacBio FASTQ are refused."""
    lane = (
        Lane("1", bam="/d/x.bam", platform=platform)
        if bam
        else Lane("1", "/d/x_R1.fastq.gz", platform=platform)
    )
    reads = SampleReads("P", "S", (lane,))
    technology = PLATFORMS[platform][1]
    if technology is Technology.SHORT_READ:
        assert hpc_pipeline(reads) is HpcPipeline.SAREK
    elif technology is Technology.PACBIO and bam:
        assert hpc_pipeline(reads) is HpcPipeline.PACVAR
    else:
        with pytest.raises(LongReadsRefused, match="local backend"):
            hpc_pipeline(reads)


def test_pacvars_outputs_are_collected_from_its_own_layout(tmp_path: Path) -> None:
    layout = backend().layout(PACBIO)
    assert isinstance(layout, pacvar.PacvarLayout)
    for relative, _kind in layout.required():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"x")
    (tmp_path / "tabix").mkdir()
    (tmp_path / "tabix" / "H1.sv.vcf.gz").write_bytes(b"x")
    found = {(f.relative, f.kind) for f in find_outputs(tmp_path, "H1", layout)}
    assert found == {
        ("samtools/H1.sorted.bam", "bam"),
        ("samtools/H1.sorted.bam.bai", "bai"),
        ("deepvariant/H1.snv.vcf.gz", "vcf"),
        ("deepvariant/H1.snv.vcf.gz.tbi", "tbi"),
        ("tabix/H1.sv.vcf.gz", "vcf"),
    }
    (tmp_path / "deepvariant" / "H1.snv.vcf.gz").unlink()
    with pytest.raises(CollectError, match=re.escape("deepvariant/H1.snv.vcf.gz")):
        find_outputs(tmp_path, "H1", layout)
    with pytest.raises(CollectError, match="markduplicates"):
        find_outputs(tmp_path, "H1")  # Sarek's layout is not pacvar's


def test_ont_is_refused_on_the_hpc_with_the_reason() -> None:
    with pytest.raises(LongReadsRefused, match=r"ONT long reads.*local backend"):
        hpc_pipeline(ONT)
