"""VCF checks: version, contigs and their lengths, samples, compression and index, every record.

pysam parses the header and each record (htslib underneath); a record htslib cannot parse
raises, and is reported with its number and htslib's reason. htslib is lenient where the
file must not be: a record on a contig the header does not declare only warns, a position
past the contig's end, bases other than ACGTN, a sample column the header does not name
and a genotype naming an allele the record lacks pass. So every record is also held to its
header in a second, streaming pass over the text (:func:`scan_records`): one problem per
kind of fault, with its count and first record, however many records have it. A BGZF VCF's
end-of-file block is checked as for BAM, since htslib reads a truncated one to its cut
without complaint. A VCF under plain gzip cannot be opened by pysam at all (it seeks), and
is reported as such.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, cast

import pysam
from isal import igzip

from services.validator._fastq_scan import scan_vcf
from services.validator.alignments import BGZF_EOF, _reference_problems, decoding_threads
from services.validator.htslib_messages import Captured, as_problems, captured, withheld
from services.validator.problems import problem
from services.validator.references import Contig, Identification, Profile, identify
from shared.events import Problem


@dataclass
class VariantReport:
    metrics: dict[str, int | float | str | bool | None] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)
    version: str = ""
    reference: Identification | None = None
    bgzipped: bool = False
    sources: list[str] = field(default_factory=list)
    contig_lengths: dict[str, int] = field(default_factory=dict)
    header_read: bool = False
    """False when the header could not be read: no sample or contig check can be made."""


def version_tuple(version: str) -> tuple[int, ...]:
    digits = version.removeprefix("VCFv")
    try:
        return tuple(int(p) for p in digits.split("."))
    except ValueError:
        return (0,)


def check_vcf(path: Path, compression: str, expected: Profile) -> VariantReport:
    report = VariantReport(bgzipped=compression == "bgzf")
    if compression == "gzip":
        report.problems.append(
            problem(
                "vcf.not_bgzf",
                "compressed with plain gzip, not BGZF (bgzip): it cannot be indexed, read by region "
                "or even opened by htslib's readers; recompress it with bgzip",
                "byte 0",
            )
        )
        return report
    if compression == "bgzf":
        size = path.stat().st_size
        with path.open("rb") as handle:
            handle.seek(max(0, size - len(BGZF_EOF)))
            if handle.read() != BGZF_EOF:
                report.problems.append(
                    problem(
                        "vcf.truncated", "no BGZF end-of-file block: the file is cut short", f"byte {size}"
                    )
                )
                return report
    # The text pass runs on a thread beside htslib's (both let the GIL go while they read),
    # started once the header has named the contigs and samples it checks against.
    with captured() as said, ThreadPoolExecutor(1, thread_name_prefix="vcf-text") as beside:
        records, scanned = _read_with_htslib(path, expected, report, beside)
        text_problems = scanned.result() if scanned is not None else []
    _with_htslib_reason(report.problems, said)
    said.drop(UNDECLARED_CONTIG)
    said.drop(RESERVED_FIELD)
    report.problems += as_problems(said, "vcf")
    report.problems += text_problems
    contigs = report.contig_lengths
    report.metrics.update(
        {
            "fileformat": report.version,
            "records": records,
            "samples": len(report.samples),
            "contigs": len(contigs),
            "bgzf": report.bgzipped,
            "reference": report.reference.flavour if report.reference else "",
        }
    )
    return report


UNDECLARED_CONTIG = re.compile(r"Contig .* is not defined in the header|Missing headers may cause")
RESERVED_FIELD = re.compile(r"^[A-Z0-9]+ should be declared as (Number|Type)=")
"""htslib's once-a-process header warnings, which ``reserved_field_declarations`` reports for
every file."""
"""htslib's warnings that :func:`scan_records` reports as ``vcf.undeclared_contig``."""


CONTIG_LINE = re.compile(rb"^##contig=<(.*)>\s*$")
CONTIG_ID = re.compile(rb"(?:^|,)ID=([^,>]+)")
CONTIG_LENGTH = re.compile(rb"(?:^|,)length=(\d+)")


# The VCF 4.3 specification's reserved INFO and FORMAT keys (sections 1.6.1 and 1.6.2) that
# callers and tools read by their declared Number and Type: (Number, Type).
RESERVED_INFO = {
    "AC": ("A", "Integer"),
    "AF": ("A", "Float"),
    "AN": ("1", "Integer"),
    "DP": ("1", "Integer"),
    "END": ("1", "Integer"),
    "MQ": ("1", "Float"),
    "MQ0": ("1", "Integer"),
    "NS": ("1", "Integer"),
}
RESERVED_FORMAT = {
    "AD": ("R", "Integer"),
    "DP": ("1", "Integer"),
    "GL": ("G", "Float"),
    "GQ": ("1", "Integer"),
    "GT": ("1", "String"),
    "PL": ("G", "Integer"),
}


def reserved_field_declarations(header: pysam.VariantHeader) -> list[Problem]:
    """A reserved key declared with another Number or Type than the specification's: a warning.

    htslib says this of PL, GL and MQ only for the first file a process opens (its warnings
    are once-only), so a report would depend on which file came before; the check is ours."""
    found: list[Problem] = []
    for section, declared, reserved in (
        ("INFO", header.info, RESERVED_INFO),
        ("FORMAT", header.formats, RESERVED_FORMAT),
    ):
        for key, (number, kind) in reserved.items():
            if key not in declared:
                continue
            meta = declared[key]
            if (str(meta.number), str(meta.type)) != (number, kind):
                found.append(
                    problem(
                        "vcf.reserved_field_declaration",
                        f"{section}/{key} is declared Number={meta.number},Type={meta.type}; "
                        f"the VCF specification reserves it as Number={number},Type={kind}",
                        f"##{section}=<ID={key}>",
                    )
                )
    return found


def declared_contigs(path: Path) -> list[Contig]:
    """The ``##contig`` lines of the header text, in order (a length of 0 where none is given)."""
    contigs: list[Contig] = []
    for line in _text_lines(path):
        if not line.startswith(b"##"):
            break
        match = CONTIG_LINE.match(line)
        if match is None:
            continue
        name = CONTIG_ID.search(match.group(1))
        length = CONTIG_LENGTH.search(match.group(1))
        if name is not None:
            contigs.append(Contig(name.group(1).decode(), int(length.group(1)) if length else 0))
    return contigs


def _with_htslib_reason(problems: list[Problem], said: Captured) -> None:
    """A header or record htslib could not read gets htslib's own reason, not pysam's
    "unable to parse next record": htslib said it as an error while reading."""
    for i, found in enumerate(problems):
        if found.code in ("vcf.unreadable", "vcf.bad_record"):
            reasons = said.take("E")
            if reasons:
                head = found.message.split(": ", 1)[0]
                reason = "; ".join(withheld(t) for t in reasons)
                problems[i] = problem(found.code, f"{head}: {reason}", found.location)
            return


def _read_with_htslib(
    path: Path, expected: Profile, report: VariantReport, beside: Executor
) -> tuple[int, Future[list[Problem]] | None]:
    """The header, then every record parsed by htslib: the number of records parsed, and
    the text pass (:func:`scan_records`), started on ``beside`` once the header is read."""
    try:
        # A thread of htslib's inflates BGZF blocks ahead of the parser (damaged blocks were
        # found to fail alike on one thread and two).
        vf = pysam.VariantFile(str(path), threads=decoding_threads())
    except (OSError, ValueError) as exc:
        report.problems.append(problem("vcf.unreadable", f"htslib cannot read the header: {exc}"))
        return 0, None
    records = 0
    with vf:
        header = vf.header
        report.header_read = True
        report.version = str(header.version)
        report.samples = list(header.samples)
        for record in header.records:
            if record.key in ("source", "pipeline") and record.value:
                report.sources.append(str(record.value))
        if version_tuple(report.version) < (4, 0):
            report.problems.append(
                problem("vcf.bad_version", f"fileformat {report.version!r} is not VCF 4.x", "line 1")
            )
        report.problems += reserved_field_declarations(header)
        # As written: htslib adds to its header the contigs an index names and those records
        # use, so pysam's list would declare what the file does not.
        contigs = declared_contigs(path)
        report.contig_lengths = {c.name: c.length for c in contigs}
        lacking = [c.name for c in contigs if c.length <= 0]
        if not contigs:
            report.problems.append(
                problem("vcf.no_contigs", "no ##contig lines: the reference cannot be checked", "header")
            )
        elif lacking:
            report.problems.append(
                problem(
                    "vcf.contig_without_length",
                    f"{len(lacking)} ##contig lines have no length (e.g. {', '.join(lacking[:3])})",
                    "header",
                )
            )
        else:
            report.reference = identify(contigs, expected)
            _reference_problems(report.reference, expected, report.problems, "##contig")
        scanned = beside.submit(scan_records, path, report)
        try:
            for _ in vf:
                records += 1
        except (OSError, ValueError) as exc:
            report.problems.append(
                problem(
                    "vcf.bad_record", f"record {records + 1} cannot be parsed: {exc}", f"record {records + 1}"
                )
            )
    return records, scanned


BASES = re.compile(rb"[ACGTNacgtn]+")
ALT_ALLELE = re.compile(
    rb"[ACGTNacgtn]+|\*|\.|<[^<>,\s]+>|"  # bases, the overlapping deletion, missing, symbolic
    rb"[ACGTNacgtn]*[\[\]][^\[\]\s]+[\[\]][ACGTNacgtn]*|\.[ACGTNacgtn]+|[ACGTNacgtn]+\."  # breakends
)
CACHE_LIMIT = 1 << 16
"""Distinct symbolic or breakend ALT texts whose verdict is remembered: a file repeats a
few (``<DEL>``, ``<DUP>``), so each is judged once, and memory stays bounded."""


@dataclass
class Fault:
    """One way records break their header: how many do, and the first one."""

    code: str
    what: str
    count: int = 0
    first: str = ""
    record: int = 0


class RecordFaults:
    def __init__(self) -> None:
        self.faults: dict[str, Fault] = {}

    def add(self, code: str, what: str, record: int, where: bytes) -> None:
        fault = self.faults.setdefault(code, Fault(code, what))
        fault.count += 1
        if fault.count == 1:
            fault.record = record
            fault.first = withheld(where.decode("utf-8", "replace")[:200])

    def problems(self) -> list[Problem]:
        return [
            problem(
                f.code,
                f"{f.what}: {f.count} record{'s' if f.count != 1 else ''}, the first {f.first}",
                f"record {f.record}",
            )
            for f in self.faults.values()
        ]


def _text_stream(path: Path) -> IO[bytes]:
    """The VCF's text, decompressed if it is (BGZF is gzip to a reader that does not seek)."""
    with path.open("rb") as probe:
        compressed = probe.read(2) == b"\x1f\x8b"
    if not compressed:
        return path.open("rb")
    # isal's reader splits lines in Python; a buffer over it splits them in C.
    inflated: IO[bytes] = igzip.open(path, "rb")  # type: ignore[no-untyped-call]
    return io.BufferedReader(cast(io.RawIOBase, inflated), 1 << 20)


def _text_lines(path: Path) -> Iterator[bytes]:
    with _text_stream(path) as handle:
        yield from handle


def _allowed_alleles(ref: bytes, alt: bytes) -> bool:
    if BASES.fullmatch(ref) is None:
        return False
    return all(ALT_ALLELE.fullmatch(allele) is not None for allele in alt.split(b","))


TEXT_BLOCK = 1 << 20
"""Bytes of VCF text handed to the C scanner at a time: memory stays flat whatever the file."""


def scan_records(path: Path, report: VariantReport) -> list[Problem]:
    """Every record against the header: contig declared, position within the contig's
    length (0 and length+1 mark telomeres), REF and ALT alleles of VCF's alphabet, one
    column per sample the header names, and GT of allele indexes the record has.

    The lines are split and checked in C (``_fastq_scan.scan_vcf``), a block at a time;
    what it hands back are the faults, and the ALT alleles that are not plain bases, which
    are held here to VCF's full ALT grammar (symbolic alleles, breakends)."""
    limits = {name.encode(): length + 1 for name, length in report.contig_lengths.items()}
    columns = 9 + len(report.samples) if report.samples else 8
    faults = RecordFaults()
    alleles_seen: dict[tuple[bytes, bytes], bool] = {}
    record = 0
    carry = b""
    with _text_stream(path) as handle:
        while True:
            block = handle.read(TEXT_BLOCK)
            data = carry + block if carry else block
            if not block:
                if not data:
                    break
                data += b"\n"  # the last line, unterminated
            consumed, records, events = scan_vcf(data, limits, columns, record)
            record += records
            carry = data[consumed:]
            for kind, number, at, first, second in events:
                where = at.replace(b"\t", b":", 1)
                if kind == "columns":
                    faults.add(
                        "vcf.sample_columns",
                        f"not the {columns} columns the #CHROM line names ({len(report.samples)} samples)",
                        number,
                        where + b" has " + first,
                    )
                elif kind == "contig":
                    faults.add(
                        "vcf.undeclared_contig", "on a contig no ##contig line declares", number, where
                    )
                elif kind == "position":
                    length = limits[at.partition(b"\t")[0]] - 1
                    faults.add(
                        "vcf.position_beyond_contig",
                        "past the end of the contig (its ##contig length)",
                        number,
                        where + f" > {length}".encode(),
                    )
                elif kind == "alleles":
                    key = (first, second)
                    allowed = alleles_seen.get(key)
                    if allowed is None:
                        allowed = _allowed_alleles(first, second)
                        if len(alleles_seen) < CACHE_LIMIT:
                            alleles_seen[key] = allowed
                    if not allowed:
                        faults.add(
                            "vcf.bad_allele",
                            "REF or ALT outside VCF's alphabet (A, C, G, T, N; ALT also *, <ID>, breakends)",
                            number,
                            where + b" " + first[:20] + b">" + second[:40],
                        )
                else:
                    faults.add(
                        "vcf.bad_genotype",
                        "GT not made of the record's allele indexes (or .) joined by / or |",
                        number,
                        where + b" GT " + first[:40],
                    )
            if not block:
                break
    return faults.problems()
