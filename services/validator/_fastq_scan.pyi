"""Types of the C extension ``_fastq_scan.c`` (the field docs are in the C source)."""

class Block:
    consumed: int
    reads: int
    bases: int
    min_length: int | None
    max_length: int
    q30_bases: int
    low_quality: bool
    high_quality: bool
    read1: int
    read2: int
    unnumbered: int
    names: bytes
    fault: str | None
    fault_record: int | None
    sequence_length: int
    quality_length: int
    bad_base_record: int | None
    bad_base_sequence: bytes | None
    bad_quality_record: int | None

def scan(data: bytes | memoryview, /) -> Block: ...
def count_alignments(
    library: str, path: str, reference: str | None, required_fields: int, threads: int, /
) -> tuple[int, int, int, int, int, int]:
    """(status, records, passed, mapped, duplicates, primary_bases); status 0 read whole,
    1 cannot open, 2 no header, 3 a record could not be decoded."""

def count_alignment_parts(
    library: str, path: str, reference: str | None, parts: list[tuple[int, int, int]], /
) -> list[tuple[int, int, int, int, int, int, int]]:
    """For each part (offset of its first container, 0 for the first; records, -1 to the end
    of the file; required fields), decoded on its own thread, the counts of
    :func:`count_alignments` and the primary unmapped records; status 3 also where a part
    ends before its records, 4 where it cannot be started."""

def scan_vcf(
    data: bytes, limits: dict[bytes, int], columns: int, first_record: int, /
) -> tuple[int, int, list[tuple[str, int, bytes, bytes, bytes]]]:
    """(consumed, records, events); each event (kind, record, chrom<TAB>pos, a, b), kind one of
    columns, contig, position, alleles (to judge), genotype."""
