"""The C record scanner of VCF text against a plain Python model of the same rules (the
scanner's former Python implementation, one record at a time). The scanner must agree with
it on every input hypothesis makes up, however the text is cut into blocks."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.validator._fastq_scan import scan_vcf
from services.validator.variants import _allowed_alleles

GENOTYPE = re.compile(rb"[/|]?(?:\d+|\.)(?:[/|](?:\d+|\.))*")
ALLELE_INDEX = re.compile(rb"\d+")
LIMITS = {b"chr1": 1001, b"chr22": 10_000_001, b"chrM": 2}


def model(text: bytes, limits: dict[bytes, int], columns: int) -> list[tuple[str, int, bytes, bytes, bytes]]:
    """The events the scanner should report, found field by field."""
    events: list[tuple[str, int, bytes, bytes, bytes]] = []
    record = 0
    for raw in text.splitlines(keepends=True):
        if raw[:1] == b"#":
            continue
        line = raw.rstrip(b"\r\n")
        if not line:
            continue
        record += 1
        fields = line.split(b"\t")
        where = b"\t".join(fields[:2])
        if len(fields) != columns and not (columns == 8 and len(fields) == 9):
            events.append(("columns", record, where, str(len(fields)).encode(), b""))
            if len(fields) < 5:
                continue
        limit = limits.get(fields[0])
        if limit is None:
            events.append(("contig", record, where, b"", b""))
        elif (
            len(fields[1]) >= len(str(limit)) and limit > 1 and fields[1].isdigit() and int(fields[1]) > limit
        ):
            events.append(("position", record, where, b"", b""))
        ref, alt = fields[3], fields[4]
        plain = all(re.fullmatch(rb"[ACGTNacgtn]+|\*|\.", a) for a in alt.split(b","))
        if re.fullmatch(rb"[ACGTNacgtn]+", ref) is None or not plain:
            events.append(("alleles", record, where, ref, alt))
        if len(fields) > 9 and fields[8][:2] == b"GT" and fields[8][2:3] in (b"", b":"):
            count = 1 if alt == b"." else alt.count(b",") + 2
            for sample in fields[9:]:
                gt = sample.partition(b":")[0]
                good = GENOTYPE.fullmatch(gt) is not None and all(
                    int(i) < count for i in ALLELE_INDEX.findall(gt)
                )
                if not good:
                    events.append(("genotype", record, where, gt, b""))
                    break
    return events


def scanned(
    text: bytes, limits: dict[bytes, int], columns: int, block: int
) -> list[tuple[str, int, bytes, bytes, bytes]]:
    """The scanner's events, fed ``block`` bytes at a time as variants.scan_records feeds it."""
    events: list[tuple[str, int, bytes, bytes, bytes]] = []
    record, carry, at = 0, b"", 0
    while True:
        piece = text[at : at + block]
        at += len(piece)
        data = carry + piece
        if not piece:
            if not data:
                break
            data += b"\n"
        consumed, records, found = scan_vcf(data, limits, columns, record)
        record += records
        events += found
        carry = data[consumed:]
        if not piece:
            break
    return events


FIELD = st.sampled_from(
    [
        b"chr1",
        b"chr22",
        b"chrM",
        b"chrUn",
        b"",
        b"0",
        b"1",
        b"1000",
        b"1001",
        b"1002",
        b"10000002",
        b"99999999999999999999",
        b"12a",
        b"A",
        b"C",
        b"acgtn",
        b"AX",
        b"*",
        b".",
        b"A,G",
        b"A,*",
        b"<DEL>",
        b"G]chr1:5]",
        b"A,<NON_REF>",
        b"GT",
        b"GT:DP",
        b"GTX",
        b"DP:GT",
        b"0/1",
        b"1|1",
        b"|0|1",
        b"0/2",
        b"./.",
        b"0/1:30",
        b"2",
        b"/",
        b"0//1",
        b"00000000001/0",
        b"PASS",
    ]
)
LINE = st.one_of(
    st.lists(FIELD, min_size=0, max_size=13).map(lambda f: b"\t".join(f)),
    st.sampled_from([b"#CHROM\tPOS", b"##contig=<ID=chr1>", b"", b"\r"]),
)
TEXT = st.tuples(st.lists(LINE, max_size=25), st.sampled_from([b"\n", b"\r\n"]), st.booleans()).map(
    lambda t: t[1].join(t[0]) + (t[1] if t[2] else b"")
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXT, columns=st.sampled_from([8, 10, 11]), block=st.integers(1, 64))
def test_the_scanner_agrees_with_the_model(text: bytes, columns: int, block: int) -> None:
    assert scanned(text, LIMITS, columns, block) == model(text, LIMITS, columns)


def test_what_the_scanner_hands_back_is_judged_by_the_alt_grammar() -> None:
    """Symbolic alleles and breakends pass; an ALT of other letters does not."""
    rest = b"\t50\tPASS\t.\n"
    text = b"chr1\t5\t.\tA\t<DEL>" + rest + b"chr1\t6\t.\tA\tG]chr1:5]" + rest + b"chr1\t7\t.\tA\tAX" + rest
    kinds = scanned(text, LIMITS, 8, 1 << 20)
    assert [(k, r) for k, r, *_ in kinds] == [("alleles", 1), ("alleles", 2), ("alleles", 3)]
    assert [_allowed_alleles(ref, alt) for _, _, _, ref, alt in kinds] == [True, True, False]
