"""VCF records held to their header, every CRAM version read right, htslib's messages in the report."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from services.validator import sniff as kinds
from services.validator.checks import check_file
from services.validator.htslib_messages import captured
from services.validator.validation import InProcess, InputFile, validate
from shared.events import AnalysisType
from shared.synthetic import SYNTHETIC_CONTIGS
from tests.unit.validator import corpus

PROFILE = "synthetic-v1"
FIRST, FIRST_LENGTH = SYNTHETIC_CONTIGS[0]


def codes(path: Path) -> set[str]:
    found = check_file(path.name, path.as_uri(), PROFILE, reference_fasta=corpus.synthetic_fasta())
    return {p.code for p in found.problems if p.severity == "error"}


@pytest.fixture(scope="module")
def reference() -> Path:
    return corpus.synthetic_fasta()


def vcf_with(record: str, samples: tuple[str, ...] = ("S1",), info: str = "") -> str:
    """The corpus's good VCF with one more record (a line of tab-separated fields)."""
    text = corpus.vcf_text(samples[0])
    head, _, body = text.partition("#CHROM")
    columns = "\t".join(samples)
    header_line, _, records = body.partition("\n")
    header_line = "#CHROM" + header_line.rsplit("\tFORMAT\t", 1)[0] + f"\tFORMAT\t{columns}"
    extra = "\t".join(["0/1"] * (len(samples) - 1))
    records = "".join(line + ("\t" + extra if extra else "") + "\n" for line in records.splitlines())
    return head + info + header_line + "\n" + records + record.replace(" ", "\t") + "\n"


@pytest.mark.parametrize(
    ("record", "code"),
    [
        ("chrUn 500 . A G 50 PASS . GT 0/1", "vcf.undeclared_contig"),
        (f"{FIRST} {FIRST_LENGTH + 5} . A G 50 PASS . GT 0/1", "vcf.position_beyond_contig"),
        (f"{FIRST} 5000 . AZ G 50 PASS . GT 0/1", "vcf.bad_allele"),
        (f"{FIRST} 5000 . A G,X 50 PASS . GT 0/1", "vcf.bad_allele"),
        (f"{FIRST} 5000 . A G 50 PASS . GT 0/1 1/1", "vcf.sample_columns"),
        (f"{FIRST} 5000 . A G 50 PASS . GT 0/3", "vcf.bad_genotype"),
        (f"{FIRST} 5000 . A G 50 PASS . GT 0/1/2", "vcf.bad_genotype"),
    ],
)
def test_each_record_fault_has_its_code(tmp_path: Path, record: str, code: str) -> None:
    vcf = corpus.write_vcf(tmp_path, "S1.vcf.gz", vcf_with(record))
    found = check_file(vcf.name, vcf.as_uri(), PROFILE, reference_fasta=corpus.synthetic_fasta())
    faults = [p for p in found.problems if p.code == code]
    assert len(faults) == 1 and faults[0].severity == "error"
    assert faults[0].location == "record 4"
    assert found.metrics["records"] == 4


def test_good_records_in_all_their_forms_pass(tmp_path: Path) -> None:
    records = [
        f"{FIRST} 5000 . A G,<DEL>,* 50 PASS . GT 1|2",
        f"{FIRST} 5001 . ACGTN acgt 50 PASS . GT ./.",
        f"{FIRST} 5002 . A G[{FIRST}:300[ 50 PASS . GT 0/1",
        f"{FIRST} 5003 . A . 50 PASS . GT 0",
        f"{FIRST} {FIRST_LENGTH} . A G 50 PASS . GT 1/1",
    ]
    vcf = corpus.write_vcf(tmp_path, "S1.vcf.gz", vcf_with("\n".join(records)))
    found = check_file(vcf.name, vcf.as_uri(), PROFILE, reference_fasta=corpus.synthetic_fasta())
    assert found.problems == []
    assert found.metrics["records"] == 8


def test_many_faulty_records_make_one_problem_with_their_count(tmp_path: Path) -> None:
    records = "\n".join(f"chrUn {100 + i} . A G 50 PASS . GT 0/1" for i in range(50))
    vcf = corpus.write_vcf(tmp_path, "S1.vcf.gz", vcf_with(records))
    found = check_file(vcf.name, vcf.as_uri(), PROFILE, reference_fasta=corpus.synthetic_fasta())
    [undeclared] = [p for p in found.problems if p.code == "vcf.undeclared_contig"]
    assert "50 records" in undeclared.message and "chrUn:100" in undeclared.message


def test_a_record_htslib_cannot_parse_carries_htslib_s_reason(tmp_path: Path) -> None:
    vcf = corpus.write_vcf(tmp_path, "S1.vcf.gz", vcf_with(f"{FIRST} 5000 . A G 50 PASS . GT 0/x"))
    found = check_file(vcf.name, vcf.as_uri(), PROFILE, reference_fasta=corpus.synthetic_fasta())
    [bad] = [p for p in found.problems if p.code == "vcf.bad_record"]
    assert bad.location == "record 4" and "GT" in bad.message
    assert "index file" not in bad.message


def test_plain_gzip_vcf_is_its_own_problem_not_a_crash(tmp_path: Path) -> None:
    vcf = tmp_path / "S1.vcf.gz"
    vcf.write_bytes(gzip.compress(corpus.vcf_text().encode(), mtime=0))
    assert kinds.sniff(vcf.read_bytes()).compression == "gzip"
    assert codes(vcf) == {"vcf.not_bgzf"}
    outcome = validate(
        [InputFile(vcf.name, vcf.as_uri())],
        corpus.validator_settings(),
        AnalysisType.WGS,
        InProcess(),
        PROFILE,
    )
    assert {p.code for p in outcome.files[0].findings.problems} == {"vcf.not_bgzf"}


def test_cram_2_1_with_its_end_of_file_container_is_whole(tmp_path: Path, reference: Path) -> None:
    cram3 = corpus.good_cram(tmp_path, reference)
    cram21 = tmp_path / "S1.v21.cram"
    subprocess.run(
        [
            "samtools",
            "view",
            "-O",
            "cram,version=2.1",
            "--reference",
            str(reference),
            "-o",
            str(cram21),
            str(cram3),
        ],
        check=True,
        capture_output=True,
    )
    assert cram21.read_bytes()[4:6] == b"\x02\x01"
    found = check_file(cram21.name, cram21.as_uri(), PROFILE, reference_fasta=corpus.synthetic_fasta())
    assert found.problems == []
    assert found.metrics["cram_version"] == "2.1" and found.metrics["reads"] == 1000
    cut = tmp_path / "cut.cram"
    cut.write_bytes(cram21.read_bytes()[:-30])
    assert "cram.truncated" in codes(cut)


def test_empty_cram_is_a_cram_not_an_unaligned_bam(tmp_path: Path, reference: Path) -> None:
    sam = tmp_path / "empty.sam"
    sam.write_text("@HD\tVN:1.6\tSO:unsorted\n@RG\tID:r\tSM:S1\tPL:PACBIO\n")
    cram = tmp_path / "empty.cram"
    subprocess.run(["samtools", "view", "-C", "-o", str(cram), str(sam)], check=True, capture_output=True)
    found = check_file(cram.name, cram.as_uri(), PROFILE, reference_fasta=corpus.synthetic_fasta())
    assert found.detected_type == "cram" and not found.raw
    assert {p.code for p in found.problems} == {"cram.no_reference_sequences"}


def test_bam_with_a_corrupt_first_block_is_not_taken_for_fastq(tmp_path: Path, reference: Path) -> None:
    bam = corpus.write_cram(
        tmp_path / "S1.bam", reference, corpus.sam_header(), corpus.aligned_sam(50), fmt="bam"
    )
    data = bytearray(bam.read_bytes())
    data[18:40] = bytes(b ^ 0xA5 for b in data[18:40])  # inside the deflate data of the header block
    bam.write_bytes(bytes(data))
    found = check_file(bam.name, bam.as_uri(), PROFILE, reference_fasta=corpus.synthetic_fasta())
    assert found.detected_type == kinds.CORRUPT_BGZF
    assert {p.code for p in found.problems} == {"bgzf.corrupt"}


def test_nul_in_a_quality_line_is_a_quality_problem(tmp_path: Path) -> None:
    pairs = corpus.simulate_pairs(20)
    text = corpus.fastq_text(pairs, 1)
    lines = text.split("\n")
    lines[3] = lines[3][:5] + "\0" + lines[3][6:]
    fastq = tmp_path / "S1_R1.fastq"
    fastq.write_text("\n".join(lines))
    assert kinds.sniff(fastq.read_bytes()).kind == kinds.FASTQ
    assert kinds.sniff(b"\0\1\2\3" * 100).kind == kinds.BINARY
    found = check_file(fastq.name, fastq.as_uri(), PROFILE, reference_fasta=corpus.synthetic_fasta())
    assert found.detected_type == "fastq"
    assert "fastq.bad_quality" in {p.code for p in found.problems}


def test_htslib_never_speaks_past_the_report(
    tmp_path: Path, reference: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    info = '##INFO=<ID=MQ,Number=1,Type=Integer,Description="mapping quality">\n'
    vcf = corpus.write_vcf(
        tmp_path, "S1.vcf.gz", vcf_with("chrUn 500 . A G 50 PASS . GT 0/1", info=info), index=False
    )
    found = check_file(vcf.name, vcf.as_uri(), PROFILE, reference_fasta=corpus.synthetic_fasta())
    cram = corpus.good_cram(tmp_path, reference)
    check_file(cram.name, cram.as_uri(), PROFILE, reference_fasta=corpus.synthetic_fasta())
    err = capfd.readouterr().err
    assert "[E::" not in err and "[W::" not in err
    by_code = {p.code: p for p in found.problems}
    assert by_code["vcf.reserved_field_declaration"].severity == "warning"
    assert "INFO/MQ is declared Number=1,Type=Integer" in by_code["vcf.reserved_field_declaration"].message
    assert "undeclared_contig" in " ".join(by_code) and "index" not in " ".join(
        p.message for p in found.problems
    )


def test_other_writes_to_stderr_pass_through_a_capture(capfd: pytest.CaptureFixture[str]) -> None:
    written = threading.Event()

    def other_thread() -> None:
        os.write(2, b"a line of another thread\n")
        written.set()

    with captured() as said:
        thread = threading.Thread(target=other_thread)
        thread.start()
        assert written.wait(10)
        os.write(2, b"[W::vcf_parse] a warning of htslib's\n")
        print("python's own stderr", file=sys.stderr)
    thread.join()
    err = capfd.readouterr().err
    assert "a line of another thread" in err and "python's own stderr" in err
    assert "[W::" not in err
    assert next(m.function for m in said.messages.values()) == "vcf_parse"


def test_a_reserved_field_declared_wrong_is_reported_for_every_file_not_only_the_first(
    tmp_path: Path,
) -> None:
    """htslib warns of PL, GL and MQ once a process; the validator's own check says it of each file."""
    info = '##INFO=<ID=MQ,Number=1,Type=Integer,Description="mapping quality">\n'
    reports = []
    for n in range(2):
        (tmp_path / str(n)).mkdir()
        vcf = corpus.write_vcf(
            tmp_path / str(n),
            "S1.vcf.gz",
            vcf_with("chr1 500 . A G 50 PASS . GT 0/1", info=info),
            index=False,
        )
        reports.append(
            {
                p.code
                for p in check_file(
                    vcf.name, vcf.as_uri(), PROFILE, reference_fasta=corpus.synthetic_fasta()
                ).problems
            }
        )
    assert all("vcf.reserved_field_declaration" in codes for codes in reports), reports
    assert not any("vcf.htslib_warning" in codes for codes in reports), "htslib's once-only warning is ours"
