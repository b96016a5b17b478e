"""Mates are held to each other whatever their read names look like.

The pairs are written by the real ``samtools fastq`` from an unaligned SAM of simulated
pairs: ``-T RG,BC`` puts the tags after a TAB, without ``-N`` the names carry no mate
number, with ``-N`` they end in ``/1`` ``/2`` before the TAB. Every way a pair can fail to
be one (R1 given twice, names that do not correspond, a short R2, a file named for the
other mate) is refused with its own problem; a true pair is accepted.
"""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.validator._fastq_scan import scan
from services.validator.validation import InProcess, InputFile, Outcome, validate
from shared.events import AnalysisType, FileRole, Verdict
from shared.fastq_files import mate_in_file_name
from tests.unit.validator import corpus

RAW = FileRole.RAW_READS


def unaligned_sam(pairs: list[tuple[str, str, int, str, str, str]]) -> str:
    lines = ["@HD\tVN:1.6\tSO:unsorted", "@RG\tID:g1\tSM:S1\tPL:ILLUMINA\tBC:ACGTACGT"]
    for name, _, _, r1, r2, quality in pairs:
        for flag, seq in ((77, r1), (141, r2)):
            lines.append(f"{name}\t{flag}\t*\t0\t0\t*\t*\t0\t0\t{seq}\t{quality}\tRG:Z:g1\tBC:Z:ACGTACGT")
    return "\n".join(lines) + "\n"


def samtools_fastq(
    directory: Path, stem: str, pairs: list[tuple[str, str, int, str, str, str]], *options: str
) -> tuple[Path, Path]:
    """``stem_R1.fastq.gz`` and ``stem_R2.fastq.gz`` as ``samtools fastq -T RG,BC OPTIONS`` writes them."""
    sam = directory / f"{stem}.sam"
    sam.write_text(unaligned_sam(pairs))
    r1, r2 = directory / f"{stem}_R1.fastq.gz", directory / f"{stem}_R2.fastq.gz"
    subprocess.run(
        ["samtools", "fastq", "-T", "RG,BC", *options, "-1", str(r1), "-2", str(r2), str(sam)],
        check=True,
        capture_output=True,
    )
    return r1, r2


def run(*paths: Path) -> Outcome:
    inputs = [InputFile(p.name, p.as_uri(), RAW) for p in paths]
    return validate(inputs, corpus.validator_settings(), AnalysisType.WGS, InProcess(), "synthetic-v1")


def codes(outcome: Outcome) -> set[str]:
    return {p.code for o in outcome.files for p in o.findings.problems}


def renamed(source: Path, name: str) -> Path:
    target = source.with_name(name)
    target.write_bytes(source.read_bytes())
    return target


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pairs")
    pairs = corpus.simulate_pairs(600)
    plain = samtools_fastq(d, "plain", pairs)
    slash = samtools_fastq(d, "slash", pairs, "-N")
    other = samtools_fastq(d, "other", corpus.simulate_pairs(600, seed=99), "-N")
    short = samtools_fastq(d, "short", pairs[:-3])
    short_slash = samtools_fastq(d, "shortslash", pairs[:-3], "-N")
    swapped = [*pairs[:300], pairs[301], pairs[300], *pairs[302:]]
    swapped_pair = samtools_fastq(d, "swapped", swapped)
    return {
        "plain_r1": plain[0], "plain_r2": plain[1], "slash_r1": slash[0], "slash_r2": slash[1],
        "other_r2": other[1], "short_r2": short[1], "short_slash_r2": short_slash[1],
        "swapped_r2": swapped_pair[1],
    }  # fmt: skip


def test_samtools_writes_what_the_issue_describes(written: dict[str, Path]) -> None:
    """The fixtures are what they claim: a TAB before the tags, a mate suffix only with -N."""
    plain = gzip.decompress(written["plain_r1"].read_bytes()).split(b"\n", 1)[0]
    slash = gzip.decompress(written["slash_r2"].read_bytes()).split(b"\n", 1)[0]
    assert b"\tRG:Z:g1\tBC:Z:ACGTACGT" in plain and b"/1" not in plain and b" " not in plain
    assert slash.split(b"\t")[0].endswith(b"/2") and b"\tRG:Z:g1" in slash


@pytest.mark.parametrize("style", ["plain", "slash"])
def test_a_true_pair_is_accepted_whatever_its_names(written: dict[str, Path], style: str) -> None:
    outcome = run(written[f"{style}_r1"], written[f"{style}_r2"])
    assert outcome.verdict is Verdict.ACCEPTED, codes(outcome)
    assert outcome.raw_reads == 1200


def test_slash_and_tab_names_carry_their_read_number(written: dict[str, Path]) -> None:
    outcome = run(written["slash_r1"], written["slash_r2"])
    assert [o.findings.read_number for o in outcome.files] == [1, 2]


@pytest.mark.parametrize("style", ["plain", "slash"])
def test_r1_given_twice_is_refused(written: dict[str, Path], style: str) -> None:
    twin = renamed(written[f"{style}_r1"], f"twin{style}_R2.fastq.gz")
    outcome = run(written[f"{style}_r1"], twin)
    assert outcome.verdict is Verdict.REJECTED
    assert "pair.duplicate_read1" in codes(outcome)


def test_r1_given_twice_under_two_read_1_names_is_refused(written: dict[str, Path]) -> None:
    twin = renamed(written["plain_r1"], "again_R1.fastq.gz")
    outcome = run(written["plain_r1"], twin)
    assert outcome.verdict is Verdict.REJECTED
    assert "pair.duplicate_read1" in codes(outcome)


def test_names_that_do_not_correspond_are_refused(written: dict[str, Path]) -> None:
    outcome = run(written["slash_r1"], written["other_r2"])
    assert outcome.verdict is Verdict.REJECTED
    assert "pair.name_mismatch" in codes(outcome)


def test_unnumbered_names_are_compared_record_by_record(written: dict[str, Path]) -> None:
    """Same first read, same count: only the record-by-record comparison sees two reads swapped."""
    outcome = run(written["plain_r1"], written["swapped_r2"])
    assert outcome.verdict is Verdict.REJECTED
    [mismatch] = [p for o in outcome.files for p in o.findings.problems if p.code == "pair.name_mismatch"]
    assert mismatch.location == "record 301"


@pytest.mark.parametrize("style", ["plain", "short_slash"])
def test_an_r2_three_reads_short_is_refused(written: dict[str, Path], style: str) -> None:
    r1 = written["slash_r1" if style == "short_slash" else "plain_r1"]
    outcome = run(r1, written[f"{style}_r2" if style != "plain" else "short_r2"])
    assert outcome.verdict is Verdict.REJECTED
    [count] = [p for o in outcome.files for p in o.findings.problems if p.code == "pair.read_count_mismatch"]
    assert "600 reads" in count.message and "597" in count.message


def test_a_read_1_file_named_read_2_is_refused(written: dict[str, Path]) -> None:
    wrong = renamed(written["slash_r1"], "wrong_R2.fastq.gz")
    outcome = run(wrong, written["slash_r2"])
    assert outcome.verdict is Verdict.REJECTED
    assert "pair.role_mismatch" in codes(outcome)


def test_an_unnumbered_file_without_its_mate_is_refused(written: dict[str, Path]) -> None:
    outcome = run(written["plain_r2"])
    assert outcome.verdict is Verdict.REJECTED
    assert "pair.missing_mate" in codes(outcome)


def test_mates_come_from_the_names_the_harmoniser_reads() -> None:
    assert [mate_in_file_name(n) for n in ("S1_R1_001.fastq.gz", "S1_R2.fq.gz", "S1.2.fastq.gz")] == [1, 2, 2]
    assert mate_in_file_name("S1.fastq.gz") is None and mate_in_file_name("S1_R3.fastq.gz") is None
    assert [mate_in_file_name(n) for n in ("S1_R1.fastq", "S1_2.fq")] == [1, 2], "uncompressed too"


def test_an_uncompressed_pair_whose_read_2_names_lose_their_number_is_compared(tmp_path: Path) -> None:
    """Read 1 names end in /1; read 2's mostly in /2, the last in nothing (so its records
    tell no mate): the file's name says read 2, and the names are compared, not refused as
    two mateless files."""
    r1 = tmp_path / "MIX1_R1.fastq"
    r2 = tmp_path / "MIX1_R2.fastq"
    r1.write_text("".join(f"@lane:{i}/1\nACGT\n+\nIIII\n" for i in range(5)))
    r2.write_text("".join(f"@other:{i}{'/2' if i < 4 else ''}\nTTGCA\n+\nIIIII\n" for i in range(5)))
    outcome = run(r1, r2)
    assert outcome.verdict is Verdict.REJECTED
    assert "pair.name_mismatch" in codes(outcome)
    assert "pair.missing_mate" not in codes(outcome)


NAME = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40).filter(
    lambda n: not n.endswith(("/1", "/2"))
)
COMMENT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30)


def read_name(header: str) -> tuple[bytes, int, int, int]:
    block = scan(f"{header}\nACGT\n+\nIIII\n".encode())
    return block.names, block.read1, block.read2, block.unnumbered


@given(
    name=NAME, mate=st.sampled_from(["", "/1", "/2"]), separator=st.sampled_from([" ", "\t"]), comment=COMMENT
)
def test_the_name_is_what_precedes_the_mate_suffix_and_the_first_space_or_tab(
    name: str, mate: str, separator: str, comment: str
) -> None:
    names, read1, read2, unnumbered = read_name(f"@{name}{mate}{separator}{comment}")
    assert names == f"{name}\n".encode()
    casava = comment[:2] if comment[:2] in ("1:", "2:") else ""
    number = mate[1:] or casava[:1]
    assert (read1, read2, unnumbered) == (number == "1", number == "2", not number)


@given(
    name=NAME,
    separators=st.tuples(st.sampled_from([" ", "\t"]), st.sampled_from([" ", "\t"])),
    tags=st.tuples(COMMENT, COMMENT),
)
def test_mates_written_any_way_have_the_same_name(
    name: str, separators: tuple[str, str], tags: tuple[str, str]
) -> None:
    """R1 with a Casava comment after a space, R2 with /2 and samtools' tags after a TAB: one name."""
    first = read_name(f"@{name}{separators[0]}1:N:0:{tags[0]}")[0]
    second = read_name(f"@{name}/2{separators[1]}{tags[1]}")[0]
    bare = read_name(f"@{name}")[0]
    assert first == second == bare
