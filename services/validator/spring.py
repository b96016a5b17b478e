"""SPRING archives: recognised, counted from their parameters, decompressed when possible.

A SPRING archive is a tar of SPRING's working files; ``cp.bin`` holds its compression
parameters as the C struct ``compression_params`` (SPRING src/util.h), whose ``num_reads``
gives the read count without decompressing. The reads themselves can only be checked once
decompressed: with ``spring_executable`` configured, :func:`decompress` is the one place
that turns the archive into FASTQ for the FASTQ checks.
"""

from __future__ import annotations

import struct
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from services.validator.sources import Source, open_stream

# 8 bools, a double, 7 uint32 (bin_thr_thr, bin_thr_high, bin_thr_low, num_reads,
# num_reads_clean[2], max_readlen), uint8 + bool, padding, 3 ints: 60 bytes (64 with padding).
PARAMS = struct.Struct("<8?d7I2B2x3i")


@dataclass(frozen=True)
class SpringParams:
    paired_end: bool
    preserve_order: bool
    preserve_quality: bool
    preserve_id: bool
    long_reads: bool
    num_reads: int
    max_read_length: int


def parse_params(data: bytes) -> SpringParams:
    fields = PARAMS.unpack_from(data)
    return SpringParams(
        paired_end=fields[0],
        preserve_order=fields[1],
        preserve_quality=fields[2],
        preserve_id=fields[3],
        long_reads=fields[4],
        num_reads=fields[12],
        max_read_length=fields[15],
    )


def read_params(url: Source) -> SpringParams | None:
    """The parameters from the archive's ``cp.bin``, streaming through the tar; None if absent."""
    with open_stream(url) as handle, tarfile.open(fileobj=handle, mode="r|") as tar:
        for member in tar:
            if member.name.rsplit("/", 1)[-1] == "cp.bin" and member.isfile():
                extracted = tar.extractfile(member)
                if extracted is None:
                    return None
                return parse_params(extracted.read(PARAMS.size))
    return None


def decompress(executable: Path, archive: Path, workdir: Path) -> list[Path]:
    """FASTQ files from the archive, by the configured ``spring`` program (``spring -d``)."""
    outputs = [workdir / "spring_1.fastq", workdir / "spring_2.fastq"]
    subprocess.run(
        [str(executable), "-d", "-i", str(archive), "-o", *map(str, outputs), "-w", str(workdir)],
        check=True,
        capture_output=True,
    )
    return [p for p in outputs if p.exists()]
