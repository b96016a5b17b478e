"""Which mate a FASTQ file holds, as its name says: the one reading of ``_R1``/``_R2`` names.

Sequencers and labs name a pair's files ``<stem>_R1_001.fastq.gz`` / ``<stem>_R2_001.fastq.gz``
(also ``.1``/``.2``, ``-1``/``-2``, ``_1``/``_2``). The harmoniser pairs a sample's files into
Sarek's lanes by these names, and the validator falls back on them where the read names
carry no mate number; both read them here, so a file is never read 1 to one and read 2 to
the other.
"""

from __future__ import annotations

import re

_MATE = r"(?P<mate>[._-](?:R)?[12])"
FASTQ_NAME = re.compile(rf"^(?P<stem>.*?){_MATE}(?P<tail>(?:_\d{{3}})?\.f(?:ast)?q\.gz)$")
"""A gzipped FASTQ's name (what Sarek takes): the stem shared by its mates, the mate
(``_R1``...), the tail."""
_ANY_FASTQ_NAME = re.compile(rf"^.*?{_MATE}(?:_\d{{3}})?\.f(?:ast)?q(?:\.gz)?$")
"""Any FASTQ's name the validator checks, gzipped or not, read the same way."""


def mate_in_file_name(name: str) -> int | None:
    """1 or 2 when ``name`` names read 1 or read 2 of a pair; None when it says neither."""
    match = _ANY_FASTQ_NAME.match(name)
    return int(match["mate"][-1]) if match else None
