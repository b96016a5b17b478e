"""A submission as a whole: mates, samples, guidelines, the four policies, verdict and genome equivalents."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from services.validator.harmonisation_policy import Candidate, decide
from services.validator.validation import InProcess, InputFile, Outcome, validate
from shared.config import GenomeEquivalentSettings, PolicySettings, ValidatorSettings
from shared.events import AnalysisType, FileRole, HarmonisationPolicy, Verdict
from tests.unit.validator import corpus

RAW = FileRole.RAW_READS
CLINICAL = FileRole.CLINICAL_OUTPUT


def settings(**overrides: object) -> ValidatorSettings:
    return corpus.validator_settings(**overrides)


def run(files: list[tuple[Path, FileRole]], **overrides: object) -> Outcome:
    inputs = [InputFile(p.name, p.as_uri(), role) for p, role in files]
    return validate(inputs, settings(**overrides), AnalysisType.WGS, InProcess())


def problems(outcome: Outcome, name: str) -> set[str]:
    [found] = [o for o in outcome.files if o.file.name == name]
    return {p.code for p in found.findings.problems}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("submission")
    reference = corpus.synthetic_fasta()
    r1, r2 = corpus.fastq_pair(d, n=2000)
    cram = corpus.good_cram(d, reference)
    vcf = corpus.write_vcf(d, "S1.vcf.gz", corpus.vcf_text())
    plain_header = corpus.sam_header(sarek=False).replace(
        "@PG\tID:samtools.markdup\tPN:samtools\tPP:bwa\tVN:1.16\tCL:samtools markdup in.bam out.bam\n", ""
    )
    body = corpus.aligned_sam().replace("\t1123\t", "\t99\t").replace("\t1171\t", "\t147\t")
    unmarked = corpus.write_cram(d / "unmarked.cram", reference, plain_header, body)
    other_vcf = corpus.write_vcf(d, "S2.vcf.gz", corpus.vcf_text(sample="S2"))
    return {
        "r1": r1, "r2": r2, "cram": cram, "vcf": vcf, "tbi": d / "S1.vcf.gz.tbi",
        "unmarked": unmarked, "other_vcf": other_vcf, "dir": d,
    }  # fmt: skip


def test_good_pair_accepted_with_genome_equivalents(files: dict[str, Path]) -> None:
    outcome = run([(files["r1"], RAW), (files["r2"], RAW)])
    assert outcome.verdict is Verdict.ACCEPTED, [o.findings.problems for o in outcome.files]
    assert outcome.raw_reads == 4000 and outcome.raw_bases == 400_000
    assert outcome.genome_equivalents == (Decimal(400_000) / Decimal(93_000_000_000)).quantize(
        Decimal("0.000001")
    )
    assert outcome.harmonisation.needs_harmonisation
    assert sorted(outcome.harmonisation.pipeline_inputs) == ["S1_R1.fastq.gz", "S1_R2.fastq.gz"]


def test_mismatched_pair(files: dict[str, Path]) -> None:
    _, other_r2 = corpus.fastq_pair(files["dir"], n=2000, seed=99, prefix="S9")
    outcome = run([(files["r1"], RAW), (other_r2, RAW)])
    assert outcome.verdict is Verdict.REJECTED
    assert "pair.name_mismatch" in problems(outcome, other_r2.name)


def test_read_count_mismatch(files: dict[str, Path]) -> None:
    short = corpus.write_gz(
        files["dir"] / "short_R2.fastq.gz", corpus.fastq_text(corpus.simulate_pairs(1500), 2)
    )
    outcome = run([(files["r1"], RAW), (short, RAW)])
    assert "pair.read_count_mismatch" in problems(outcome, short.name)
    assert outcome.verdict is Verdict.REJECTED


def test_r1_uploaded_twice(files: dict[str, Path]) -> None:
    twin = files["dir"] / "S1_R2_really_R1.fastq.gz"
    twin.write_bytes(files["r1"].read_bytes())
    outcome = run([(files["r1"], RAW), (twin, RAW)])
    assert outcome.verdict is Verdict.REJECTED
    assert "pair.duplicate_read1" in problems(outcome, twin.name) | problems(outcome, files["r1"].name)


def test_slash_style_names_pair(files: dict[str, Path]) -> None:
    pairs = corpus.simulate_pairs(300)
    a = corpus.write_gz(files["dir"] / "old_1.fq.gz", corpus.fastq_text(pairs, 1, style="slash"))
    b = corpus.write_gz(files["dir"] / "old_2.fq.gz", corpus.fastq_text(pairs, 2, style="slash"))
    outcome = run([(a, RAW), (b, RAW)])
    assert outcome.verdict is Verdict.ACCEPTED, [o.findings.problems for o in outcome.files]


def test_vcf_sample_must_match_cram(files: dict[str, Path]) -> None:
    outcome = run(
        [(files["r1"], RAW), (files["r2"], RAW), (files["cram"], CLINICAL), (files["other_vcf"], CLINICAL)]
    )
    assert "vcf.sample_mismatch" in problems(outcome, files["other_vcf"].name)


def test_role_mismatch(files: dict[str, Path]) -> None:
    outcome = run([(files["r1"], RAW), (files["r2"], RAW), (files["cram"], RAW)])
    assert "file.role_mismatch" in problems(outcome, files["cram"].name)


def full(files: dict[str, Path], cram: str = "cram") -> list[tuple[Path, FileRole]]:
    return [
        (files["r1"], RAW),
        (files["r2"], RAW),
        (files[cram], CLINICAL),
        (files["vcf"], CLINICAL),
        (files["tbi"], CLINICAL),
    ]


def test_guideline_conformance(files: dict[str, Path]) -> None:
    outcome = run(full(files))
    conforms = {o.file.name: o.conforms for o in outcome.files}
    assert conforms["S1.cram"] is True and conforms["S1.vcf.gz"] is True
    bad = run(full(files, "unmarked"))
    [cram] = [o for o in bad.files if o.file.name == "unmarked.cram"]
    assert cram.conforms is False
    reasons = str(cram.findings.metrics["guideline_reasons"])
    assert "duplicates not marked" in reasons and "allowed pipeline" in reasons


@pytest.mark.parametrize(
    ("policy", "cram", "with_raw", "verdict", "needs", "passthrough"),
    [
        ("harmonise-and-store", "cram", True, "accepted", True, []),
        ("harmonise-and-store", "cram", False, "rejected", False, []),
        ("international", "cram", True, "accepted", True, []),
        ("international", "cram", False, "rejected", False, []),
        ("partial", "cram", True, "accepted", False, ["S1.cram", "S1.vcf.gz"]),
        ("partial", "unmarked", True, "accepted", True, []),
        ("partial", "cram", False, "rejected", False, []),
        ("national", "cram", False, "accepted", False, ["S1.cram", "S1.vcf.gz"]),
        ("national", "unmarked", True, "accepted", True, []),
        ("national", "unmarked", False, "rejected", False, []),
    ],
)
def test_policies(
    files: dict[str, Path],
    policy: str,
    cram: str,
    with_raw: bool,
    verdict: str,
    needs: bool,
    passthrough: list[str],
) -> None:
    chosen = [f for f in full(files, cram) if with_raw or f[1] is CLINICAL]
    outcome = run(chosen, policy=PolicySettings(harmonisation_policy=HarmonisationPolicy(policy)))
    assert outcome.verdict.value == verdict, outcome.harmonisation.reasons
    assert outcome.harmonisation.needs_harmonisation is needs
    assert sorted(outcome.harmonisation.passthrough) == passthrough
    if verdict == "accepted" and needs:
        assert sorted(outcome.harmonisation.pipeline_inputs) == ["S1_R1.fastq.gz", "S1_R2.fastq.gz"]
    accepted = {o.file.name: o.accepted for o in outcome.files}
    if policy == "international" and with_raw:
        assert accepted["S1.cram"] is False and accepted["S1_R1.fastq.gz"] is True
    if policy == "partial" and cram == "unmarked":
        assert accepted["unmarked.cram"] is False and accepted["S1.vcf.gz"] is True
    if verdict == "rejected":
        assert outcome.genome_equivalents == 0 and not any(accepted.values())


def test_national_without_fastq_counts_cram_bases(files: dict[str, Path]) -> None:
    outcome = run(
        [(files["cram"], CLINICAL), (files["vcf"], CLINICAL), (files["tbi"], CLINICAL)],
        policy=PolicySettings(harmonisation_policy=HarmonisationPolicy.NATIONAL),
    )
    assert outcome.verdict is Verdict.ACCEPTED
    assert outcome.raw_bases == 0
    assert outcome.genome_equivalents == (Decimal(100_000) / Decimal(93_000_000_000)).quantize(
        Decimal("0.000001")
    )


def test_bases_rule_counts_a_sample_once(files: dict[str, Path]) -> None:
    with_cram = run(full(files))
    fastq_only = run([(files["r1"], RAW), (files["r2"], RAW)])
    assert with_cram.genome_equivalents == fastq_only.genome_equivalents


def test_analysis_rule(files: dict[str, Path]) -> None:
    outcome = run(full(files), genome_equivalents=GenomeEquivalentSettings(rule="analysis"))
    assert outcome.genome_equivalents == Decimal("1.000000")
    weighted = validate(
        [InputFile(p.name, p.as_uri(), r) for p, r in full(files)],
        settings(
            genome_equivalents=GenomeEquivalentSettings(
                rule="analysis", analysis_weights={"WES": Decimal("0.25")}
            )
        ),
        AnalysisType.WES,
        InProcess(),
    )
    assert weighted.genome_equivalents == Decimal("0.250000")


def test_policy_rejects_unsound_needed_files() -> None:
    outcome = decide(
        HarmonisationPolicy.INTERNATIONAL,
        [
            Candidate("R1", "raw", False),
            Candidate("R2", "raw", True),
            Candidate("x.cram", "alignment", False, False),
        ],
    )
    assert outcome.rejected and "R1" in outcome.unsatisfied[-1]
    fine = decide(
        HarmonisationPolicy.INTERNATIONAL,
        [
            Candidate("R1", "raw", True),
            Candidate("R2", "raw", True),
            Candidate("x.cram", "alignment", False, False),
        ],
    )
    assert not fine.rejected and fine.accepted == {"R1": True, "R2": True, "x.cram": False}


def test_cli_json_and_exit_code(files: dict[str, Path], tmp_path: Path) -> None:
    exe = str(Path(sys.executable).with_name("genomhub"))
    good = subprocess.run(
        [exe, "validate", str(files["r1"]), str(files["r2"]), "--json"], capture_output=True, text=True
    )
    assert good.returncode == 0, good.stderr
    report = json.loads(good.stdout)
    assert report["verdict"] == "accepted" and report["raw_reads"] == 4000
    assert {f["detected_type"] for f in report["files"]} == {"fastq"}
    empty = tmp_path / "empty.fastq.gz"
    empty.write_bytes(b"")
    bad = subprocess.run([exe, "validate", str(empty)], capture_output=True, text=True)
    assert bad.returncode == 1
    assert "REJECTED" in bad.stdout and "file.empty" in bad.stdout


def test_a_cpr_number_as_a_file_s_sample_name_is_an_error_and_never_quoted(files: dict[str, Path]) -> None:
    """Labs name samples by CPR number in VCF columns and @RG SM; the problems reach the
    catalogue, which may leave NGC, so the name is reported as such and never quoted."""
    cpr_vcf = corpus.write_vcf(files["dir"], "cpr.vcf.gz", corpus.vcf_text(sample="120385-1234"))
    outcome = run([(files["r1"], RAW), (files["r2"], RAW), (files["cram"], CLINICAL), (cpr_vcf, CLINICAL)])
    assert "header.direct_identifier" in problems(outcome, cpr_vcf.name)
    assert outcome.verdict is Verdict.REJECTED
    text = json.dumps([p.model_dump() for o in outcome.files for p in o.findings.problems])
    assert "120385" not in text
