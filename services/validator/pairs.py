"""Mates of a FASTQ pair: which file is read 1 and which read 2, and that they correspond.

A file's mate is read from its records where their names carry it (a ``/1`` ``/2`` suffix or
a Casava comment ``1:N:...``); names that carry none (``samtools fastq`` without ``-N``,
SRA's dumps, many lab pipelines) leave it to the file's name in the submission
(``_R1``/``_R2``, :mod:`shared.fastq_files`). Either way the mates are then held to each
other record by record: the same read names (mate suffix and comment removed, whatever the
separator), the same number of reads, and not the same reads twice. A pair that is not a
pair is refused with a problem that says which of these it is; no pairing check is ever
skipped for the way the names are written.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass

from services.validator.checks import FileFindings, unreadable
from services.validator.fastq import first_name_mismatch
from services.validator.problems import problem
from services.validator.sources import Source
from shared.encryption import EncryptionError
from shared.fastq_files import mate_in_file_name


@dataclass
class MateFile:
    """One FASTQ of a submission, as the pairing sees it."""

    name: str
    url: Source
    findings: FileFindings
    sha256: str = ""


def check_pairs(files: list[MateFile], executor: Executor) -> None:
    """Pair the FASTQ ``files`` of one submission and add each pair's problems to its files.

    Read 1 files with the same first read are one file given twice; the rest are matched
    to read 2 files by their first read name, then by name order; a read 1 or read 2 file
    left over has no mate. Files whose mate neither the records nor the name tell are
    paired when their first reads have the same name, in the order given.
    """
    numbered: dict[int, list[MateFile]] = {1: [], 2: []}
    unnumbered: list[MateFile] = []
    for f in files:
        mate = _mate(f)
        (numbered[mate] if mate else unnumbered).append(f)
    r1s = _distinct(numbered[1], 1)
    r2s = _distinct(numbered[2], 2)
    pairs: list[tuple[MateFile, MateFile]] = []
    for r1 in list(r1s):
        mate_file = next((r2 for r2 in r2s if r2.findings.first_name == r1.findings.first_name), None)
        if mate_file is not None:
            pairs.append((r1, mate_file))
            r1s.remove(r1)
            r2s.remove(mate_file)
    for r1, r2 in zip(sorted(r1s, key=_file_name), sorted(r2s, key=_file_name), strict=False):
        pairs.append((r1, r2))
    paired = {id(f) for pair in pairs for f in pair}
    for number, group in ((1, r1s), (2, r2s)):
        for f in group:
            if id(f) not in paired:
                f.findings.problems.append(
                    problem("pair.missing_mate", f"read {number} file without its mate")
                )
    seen: dict[str, MateFile] = {}
    for f in unnumbered:
        other = seen.get(f.findings.first_name)
        if other is None:
            seen[f.findings.first_name] = f
        elif f.sha256 and f.sha256 == other.sha256:
            f.findings.problems.append(problem("pair.duplicate_file", f"the same bytes as {other.name}"))
        else:
            pairs.append((other, f))
    for r1, r2 in pairs:
        check_mates(r1, r2, executor)


def _file_name(f: MateFile) -> str:
    return f.name


def _mate(f: MateFile) -> int | None:
    """Read 1 or 2 as the records say, else as the file's name says; a contradiction is a problem."""
    in_records = f.findings.read_number
    in_name = mate_in_file_name(f.name)
    if in_records and in_name and in_records != in_name:
        f.findings.problems.append(
            problem(
                "pair.role_mismatch",
                f"named as read {in_name} but its records are read {in_records}",
                "record 1",
            )
        )
    return in_records or in_name


def _distinct(group: list[MateFile], number: int) -> list[MateFile]:
    """The files of one mate number with different first reads; the others are refused as twins."""
    first: dict[str, MateFile] = {}
    for f in group:
        twin = first.setdefault(f.findings.first_name, f)
        if twin is not f:
            f.findings.problems.append(
                problem(
                    f"pair.duplicate_read{number}",
                    f"read {number} of the same reads as {twin.name}: R{number} uploaded twice",
                    "record 1",
                )
            )
    return list(first.values())


def check_mates(r1: MateFile, r2: MateFile, executor: Executor) -> None:
    """Two files taken as read 1 and read 2 of the same reads: counts, sequences, names."""
    a, b = r1.findings, r2.findings
    if a.sequences_digest and a.sequences_digest == b.sequences_digest:
        b.problems.append(
            problem(
                "pair.duplicate_read1",
                f"the same reads as {r1.name} (identical sequences): one file given as both mates",
                "record 1",
            )
        )
        return
    if a.reads != b.reads:
        b.problems.append(
            problem(
                "pair.read_count_mismatch",
                f"{a.reads} reads in {r1.name} but {b.reads} in {r2.name}",
            )
        )
    if a.headers_digest == b.headers_digest:
        return
    try:
        mismatch = executor.submit(first_name_mismatch, r1.url, r2.url).result()
    except EncryptionError as exc:  # read whole once already: the archive changed under us
        b.problems.append(unreadable(exc))
        return
    if mismatch is not None:
        index, left, right = mismatch
        b.problems.append(
            problem(
                "pair.name_mismatch",
                f"mates do not match: {left!r} in {r1.name}, {right!r} in {r2.name}",
                f"record {index + 1}",
            )
        )
