"""``genomhub validate`` on a region's own files: GRCh38 by default, CRAMs decoded against
the FASTA the uploader gives (or configures), and a plain word when that FASTA is missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.validator.checks import check_file
from services.validator.references import decoding_reference
from tests.unit.validator import corpus
from tools.stack.environment import StackSettings

GENOMHUB = str(Path(sys.executable).with_name("genomhub"))


def genomhub_validate(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The command as an uploader runs it: no reference configured unless ``env`` sets one."""
    environment = {k: v for k, v in os.environ.items() if k != "GENOMHUB_REFERENCE_FASTA"} | env
    return subprocess.run(
        [GENOMHUB, "validate", *args], capture_output=True, text=True, env=environment, check=False
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("command")
    r1, r2 = corpus.fastq_pair(d, n=200)
    return {"r1": r1, "r2": r2, "cram": corpus.good_cram(d, StackSettings().reference())}


def test_the_default_profile_is_grch38(files: dict[str, Path]) -> None:
    done = genomhub_validate(str(files["r1"]), str(files["r2"]), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["reference_profile"] == "GRCh38"


def test_a_cram_without_a_reference_says_what_it_needs(files: dict[str, Path]) -> None:
    done = genomhub_validate(str(files["cram"]))
    assert done.returncode == 2
    assert "S1.cram" in done.stderr and "GRCh38" in done.stderr
    assert "--reference FASTA" in done.stderr and "GENOMHUB_REFERENCE_FASTA" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("given", ["option", "setting"])
def test_a_cram_is_decoded_against_the_reference_given(files: dict[str, Path], given: str) -> None:
    """Decoded against the FASTA given, the synthetic CRAM's reads are counted, and it is
    refused for what it is: its contigs are not GRCh38's."""
    fasta = str(StackSettings().reference())
    args, env = (
        (["--reference", fasta], {}) if given == "option" else ([], {"GENOMHUB_REFERENCE_FASTA": fasta})
    )
    done = genomhub_validate(str(files["cram"]), "--json", *args, **env)
    assert done.returncode == 1, done.stderr
    [cram] = json.loads(done.stdout)["files"]
    assert cram["metrics"]["reads"] > 0
    assert [(p["code"], p["location"]) for p in cram["problems"]] == [("reference.unknown", "@SQ")]


def test_the_synthetic_profile_decodes_with_the_synthetic_reference(files: dict[str, Path]) -> None:
    """With the synthetic reference configured, as the local stack configures it."""
    done = genomhub_validate(
        str(files["r1"]),
        str(files["r2"]),
        str(files["cram"]),
        "--reference-profile",
        "synthetic-v1",
        "--json",
        GENOMHUB_REFERENCE_FASTA=str(StackSettings().reference()),
    )
    assert done.returncode == 0, done.stdout
    report = json.loads(done.stdout)
    assert report["reference_profile"] == "synthetic-v1"
    assert [f["metrics"]["reads"] > 0 for f in report["files"]] == [True, True, True]


def test_the_synthetic_profile_without_its_fasta_says_what_it_needs(files: dict[str, Path]) -> None:
    """The command builds no synthetic genome of its own: that is the local stack's."""
    done = genomhub_validate(str(files["r1"]), "--reference-profile", "synthetic-v1")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--reference FASTA" in done.stderr and "GENOMHUB_REFERENCE_FASTA" in done.stderr


def test_an_unknown_profile_is_a_usage_error(files: dict[str, Path]) -> None:
    done = genomhub_validate(str(files["r1"]), "--reference-profile", "hg19")
    assert done.returncode == 2 and "GRCh38" in done.stderr and "Traceback" not in done.stderr


def test_a_grch38_cram_is_never_decoded_against_the_synthetic_fasta(files: dict[str, Path]) -> None:
    """Only the FASTA given or configured decodes: nothing is guessed, the synthetic one least
    of all (the local stack configures it for its own processes)."""
    given, configured = Path("/refs/GRCh38.fa"), Path("/refs/configured.fa")
    assert decoding_reference(None) is None
    assert decoding_reference(None, given) == given
    assert decoding_reference(configured) == configured
    assert decoding_reference(configured, given) == given


def test_the_service_names_the_missing_reference_as_a_problem(files: dict[str, Path]) -> None:
    found = check_file("S1.cram", files["cram"].as_uri(), "GRCh38")
    assert [p.code for p in found.problems] == ["cram.reference_required"]
    assert "GENOMHUB_REFERENCE_FASTA" in found.problems[0].message
