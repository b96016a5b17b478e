"""The C FASTQ scanner against a plain record-by-record statement of the rules.

``oracle`` below is the specification written the slow, obvious way (whole file in memory,
one record at a time). The scanner must agree with it on every input hypothesis makes up,
good or broken, however the bytes are cut into chunks: records split across chunks, a
record longer than the stitch, a last line without its newline, a file cut mid-record.
"""

from __future__ import annotations

import gzip
import itertools
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.validator import fastq
from services.validator.fastq import FastqScanner, check_fastq, first_name_mismatch

BASES = b"ACGTNacgtn"
VALID_QUALITY = bytes(range(33, 127))


@dataclass
class Expected:
    reads: int = 0
    bases: int = 0
    min_length: int | None = None
    max_length: int = 0
    q30_bases: int = 0
    problems: dict[str, str] = field(default_factory=dict)
    names: list[bytes] = field(default_factory=list)
    read_number: int | None = None


def location(record: int) -> str:
    return f"record {record + 1} (line {4 * record + 1})"


def split_name(header: bytes) -> tuple[bytes, int | None]:
    """The name before the first space or TAB (Casava's separator, and samtools fastq -T's)."""
    ends = [i for i in (header.find(b" "), header.find(b"\t")) if i > 0]
    name, comment = (header[1 : min(ends)], header[min(ends) + 1 :]) if ends else (header[1:], b"")
    if name.endswith((b"/1", b"/2")):
        return name[:-2], name[-1] - 48
    if comment[:2] in (b"1:", b"2:"):
        return name, comment[0] - 48
    return name, None


def oracle(data: bytes) -> Expected:
    out = Expected()
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    whole = len(lines) - len(lines) % 4
    numbers: set[int | None] = set()
    low = high = broken = False
    for r in range(whole // 4):
        h, s, p, q = lines[4 * r : 4 * r + 4]
        fatal = None
        if not h.startswith(b"@"):
            fatal = "fastq.bad_header"
        elif b"\r" in h:
            fatal = "fastq.crlf"
        elif not p.startswith(b"+") or (len(p) > 1 and p[1:] != h[1:]):
            fatal = "fastq.bad_separator"
        elif len(s) != len(q):
            fatal = "fastq.length_mismatch"
        if fatal:
            out.problems.setdefault(fatal, location(r))
            broken = True
            break
        if s.translate(None, BASES):
            out.problems.setdefault("fastq.bad_base", location(r))
        if q.translate(None, VALID_QUALITY):
            out.problems.setdefault("fastq.bad_quality", location(r))
        out.reads += 1
        out.bases += len(s)
        out.min_length = len(s) if out.min_length is None else min(out.min_length, len(s))
        out.max_length = max(out.max_length, len(s))
        out.q30_bases += sum(63 <= c < 127 for c in q)
        low = low or any(33 <= c < 59 for c in q)
        high = high or any(75 <= c < 127 for c in q)
        name, number = split_name(h)
        out.names.append(name)
        numbers.add(number)
    if not broken and whole != len(lines):
        out.problems.setdefault("fastq.truncated_record", location(whole // 4))
    if not out.reads and not broken:
        out.problems.setdefault("fastq.no_reads", "")
    if high and not low and out.reads:
        out.problems.setdefault("fastq.phred64", "")
    if {1, 2} <= numbers:
        out.problems.setdefault("fastq.mixed_read_numbers", "")
    if len(numbers) == 1 and None not in numbers:
        out.read_number = next(iter(numbers))
    return out


def scanned(data: bytes, cuts: list[int]) -> tuple[fastq.FastqReport, list[bytes]]:
    scanner = FastqScanner()
    names: list[bytes] = []
    edges = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    for a, b in itertools.pairwise(edges):
        if b > a:
            names += scanner.feed(data[a:b])
    names.append(scanner.end())
    return scanner.finish(), b"".join(names).split(b"\n")[:-1]


def assert_agrees(data: bytes, cuts: list[int]) -> None:
    expected = oracle(data)
    report, names = scanned(data, cuts)
    assert {p.code: p.location for p in report.problems} == expected.problems
    assert (report.reads, report.bases, report.min_length, report.max_length, report.q30_bases) == (
        expected.reads,
        expected.bases,
        expected.min_length,
        expected.max_length,
        expected.q30_bases,
    )
    assert names == expected.names
    assert report.read_number == expected.read_number
    assert report.first_name == (expected.names[0].decode("latin-1") if expected.names else "")


QUALITY = "!#+5?FIJK:~" + "\x7f \t"
SEQUENCE = "ACGTNacgtn" + "X."


@st.composite
def records(draw: st.DrawFn) -> bytes:
    name = draw(st.sampled_from(["r1", "A00:8:HX:1:1101:10:20", "x/3", "a b", "a\tb", ""]))
    style = draw(
        st.sampled_from(
            ["casava", "slash", "plain", "casava2", "slash2", "samtools_tags", "slash_tags", "casava_tab"]
        )
    )
    header = {
        "casava": f"@{name} 1:N:0:ACGT",
        "casava2": f"@{name} 2:N:0:ACGT",
        "slash": f"@{name}/1",
        "slash2": f"@{name}/2",
        "plain": f"@{name}",
        "samtools_tags": f"@{name}\tRG:Z:g1\tBC:Z:ACGT",
        "slash_tags": f"@{name}/2\tRG:Z:g1 x",
        "casava_tab": f"@{name}\t1:N:0:ACGT",
    }[style]
    length = draw(st.one_of(st.integers(0, 40), st.integers(100, 300)))
    seq = draw(st.text(st.sampled_from(SEQUENCE[:10]), min_size=length, max_size=length))
    qual = draw(st.text(st.sampled_from(QUALITY[:11]), min_size=length, max_size=length))
    plus = "+"
    fault = draw(st.sampled_from([None] * 12 + ["header", "crlf", "sep", "sep_name", "len", "base", "qual"]))
    if fault == "header":
        header = header[1:]
    elif fault == "crlf":
        header += "\r"
    elif fault == "sep":
        plus = draw(st.sampled_from(["", "-", "+x"]))
    elif fault == "sep_name":
        plus = "+" + header[1:]
    elif fault == "len":
        qual += draw(st.sampled_from(["I", ""])) if qual else "I"
        qual = qual[:-2] if len(qual) > 2 and draw(st.booleans()) else qual
    elif fault == "base" and length:
        seq = seq[:-1] + draw(st.sampled_from(SEQUENCE[10:]))
    elif fault == "qual" and length:
        qual = qual[:-1] + draw(st.sampled_from(QUALITY[11:]))
    return f"{header}\n{seq}\n{plus}\n{qual}\n".encode("latin-1")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.lists(records(), max_size=12),
    ending=st.sampled_from(["whole", "no_newline", "cut", "blank"]),
    cut_at=st.integers(0, 10_000),
    cuts=st.lists(st.integers(0, 10_000), max_size=6),
    stitch=st.sampled_from([1, 7, 4096]),
)
def test_scanner_agrees_with_the_rules(
    body: list[bytes], ending: str, cut_at: int, cuts: list[int], stitch: int
) -> None:
    data = b"".join(body)
    if ending == "no_newline" and data.endswith(b"\n"):
        data = data[:-1]
    elif ending == "cut" and data:
        data = data[: cut_at % len(data)]
    elif ending == "blank":
        data += b"\n"
    original = fastq.STITCH
    fastq.STITCH = stitch  # small stitches take the path for records longer than the stitch
    try:
        assert_agrees(data, cuts)
    finally:
        fastq.STITCH = original


def test_long_read_across_many_chunks() -> None:
    seq = b"ACGT" * 50_000
    data = b"@long 1:N:0:A\n" + seq + b"\n+\n" + b"I" * len(seq) + b"\n@s 1:N:0:A\nAC\n+\n!!\n"
    assert_agrees(data, list(range(0, len(data), 3000)))


def test_length_mismatch_is_reported_with_both_lengths() -> None:
    report, _ = scanned(b"@a\nACGT\n+\nIIII\n@b\nACGT\n+\nIII\n@c\nA\n+\nI\n", [])
    [found] = report.problems
    assert found.code == "fastq.length_mismatch" and found.location == location(1)
    assert "4 bases but quality has 3 characters" in found.message
    assert report.reads == 1


def test_odd_bases_are_named() -> None:
    report, _ = scanned(b"@a\nACXT.\n+\nIIIII\n", [])
    [found] = report.problems
    assert found.code == "fastq.bad_base" and "'.X'" in found.message


def write(path: Path, text: bytes) -> str:
    path.write_bytes(gzip.compress(text))
    return path.as_uri()


def test_mates_compare_by_name_whatever_the_form(tmp_path: Path) -> None:
    names = [f"A00:8:HX:1:1101:{i}:{i * 7}" for i in range(5000)]

    def reads(form: str) -> bytes:
        return "".join(f"@{form.format(n)}\nACGT\n+\nFFFF\n" for n in names).encode()

    r1 = check_fastq(write(tmp_path / "r1.fq.gz", reads("{} 1:N:0:ACGT")))
    r2 = check_fastq(write(tmp_path / "r2.fq.gz", reads("{} 2:N:0:GGGG")))
    old1 = check_fastq(write(tmp_path / "o1.fq.gz", reads("{}/1")))
    assert (r1.read_number, r2.read_number, old1.read_number) == (1, 2, 1)
    assert r1.headers_digest == r2.headers_digest == old1.headers_digest
    names[3000] = "someone:else"
    other = write(tmp_path / "r2b.fq.gz", reads("{} 2:N:0:ACGT"))
    assert check_fastq(other).headers_digest != r1.headers_digest
    assert first_name_mismatch((tmp_path / "r1.fq.gz").as_uri(), other) == (
        3000,
        "A00:8:HX:1:1101:3000:21000",
        "someone:else",
    )


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (b"@a 1:N\nAC\n+\nII\n@b 2:N\nAC\n+\nII\n", "fastq.mixed_read_numbers"),
        (b"@a\r\nAC\r\n+\r\nII\r\n", "fastq.crlf"),
        (b"@a\nAC\n+b\nII\n", "fastq.bad_separator"),
        (b"@a\nAC\n+\nI\x7f\n", "fastq.bad_quality"),
        (b"@a\nAC\n+\n", "fastq.truncated_record"),
        (b"@a\nAC\n+\nhh\n", "fastq.phred64"),
    ],
)
def test_each_rule_has_its_code(text: bytes, code: str) -> None:
    report, _ = scanned(text, [])
    assert code in {p.code for p in report.problems}
