"""htslib's own messages (``[E::idx_find_and_load] ...``, ``[W::vcf_parse] ...``), caught and read.

htslib writes its warnings and errors straight to the process's standard error, and
neither it nor pysam offers a hook to send them elsewhere. Left alone they reach the
uploader's terminal (or the service's log) past the report, and what they say about the
file is lost to it. So file descriptor 2 is pointed at a temporary file for as long as a
file's checks call into htslib, and what htslib said is read back: what matters becomes
problems of the file, the rest (an index htslib probed for and did not find) is dropped.

Redirecting fd 2 is process-wide. The validator's checks run in worker processes that
do one file at a time on one thread, so there it catches that file's messages only. Where
checks run inside a process with other threads (tests, ``genomhub validate`` on one file),
a lock keeps two captures from interleaving, and every line that is not htslib's (another
thread's log, a Python warning) is written back to the real standard error when the capture
ends: delayed, never lost. The record kept is bounded: a count per kind of message and
the first few texts, however many lines htslib writes.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

import pysam

from services.validator.problems import problem
from shared.events import Problem
from shared.identifiers import contains_cpr

HTS_LOG_WARNING = 3
"""htslib's verbosity that prints errors and warnings (not its informational chatter)."""

EXAMPLES_KEPT = 3
SHAPES_KEPT = 50
"""Distinct kinds of message kept; beyond them only a count (memory stays flat)."""
LINE = re.compile(rb"^\[([EWID])::([A-Za-z0-9_]+)\] ?(.*)$")
VARYING = re.compile(r"'[^']*'|\"[^\"]*\"|\S+:\d+|\d+")
PROBING = frozenset({"idx_find_and_load", "cram_index_load", "hts_idx_load3", "fai_load3"})
"""Functions whose complaint is that an index beside the file is missing: pysam looks for
one whenever it opens a file. Indexes are checked among the submission's files instead."""

_lock = threading.Lock()


@dataclass
class Message:
    """One kind of htslib message: level, function and text with its particulars blanked."""

    level: str
    function: str
    shape: str
    count: int = 0
    examples: list[str] = field(default_factory=list)


@dataclass
class Captured:
    """What htslib said during a capture, by kind of message, in order of first appearance."""

    messages: dict[tuple[str, str, str], Message] = field(default_factory=dict)
    uncounted: int = 0

    def add(self, level: str, function: str, text: str) -> None:
        shape = VARYING.sub("_", text)
        key = (level, function, shape)
        if key not in self.messages and len(self.messages) >= SHAPES_KEPT:
            self.uncounted += 1
            return
        entry = self.messages.setdefault(key, Message(level, function, shape))
        entry.count += 1
        if len(entry.examples) < EXAMPLES_KEPT and text not in entry.examples:
            entry.examples.append(text)

    def take(self, level: str) -> list[str]:
        """The texts of every message of ``level``, removed: a check reports them itself."""
        taken = [m for key, m in self.messages.items() if key[0] == level and key[1] not in PROBING]
        for m in taken:
            del self.messages[(m.level, m.function, m.shape)]
        return [text for m in taken for text in m.examples]

    def drop(self, covered: re.Pattern[str]) -> None:
        """Forget messages whose text ``covered`` matches: the file's own checks report them."""
        for key in [k for k, m in self.messages.items() if covered.search(m.examples[0])]:
            del self.messages[key]


@contextlib.contextmanager
def captured() -> Iterator[Captured]:
    """htslib's messages while the block runs; other writes to fd 2 pass through after it."""
    found = Captured()
    with _lock, tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        previous = pysam.set_verbosity(HTS_LOG_WARNING)
        os.dup2(sink.fileno(), 2)
        try:
            yield found
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            pysam.set_verbosity(previous)
            sink.seek(0)
            _read_back(sink, found)


def _read_back(sink: IO[bytes], found: Captured) -> None:
    for line in sink:
        match = LINE.match(line.rstrip(b"\r\n"))
        if match is None:
            _pass_through(line)
            continue
        level, function, text = (part.decode("utf-8", "replace") for part in match.groups())
        found.add(level, function, text.strip())
    sys.stderr.flush()


def _pass_through(line: bytes) -> None:
    buffer = getattr(sys.stderr, "buffer", None)
    if buffer is not None:
        buffer.write(line)
    else:
        sys.stderr.write(line.decode("utf-8", "replace"))


def withheld(text: str) -> str:
    """htslib's text as a problem may quote it: never when it reads as a CPR number."""
    return "(text withheld: it quotes a CPR number)" if contains_cpr(text) else text


def as_problems(found: Captured, kind: str) -> list[Problem]:
    """Errors and warnings htslib gave about the file, as ``<kind>.htslib_error``/``_warning``."""
    problems: list[Problem] = []
    for message in found.messages.values():
        if message.level not in ("E", "W") or message.function in PROBING:
            continue
        texts = [withheld(t) for t in message.examples]
        more = f" (and {message.count - len(texts)} more like it)" if message.count > len(texts) else ""
        severity = "error" if message.level == "E" else "warning"
        problems.append(
            problem(
                f"{kind}.htslib_{severity}", f"htslib {severity}: {'; '.join(texts)}{more}", message.function
            )
        )
    if found.uncounted:
        problems.append(
            problem(
                f"{kind}.htslib_warning", f"htslib gave {found.uncounted} further messages of other kinds"
            )
        )
    return problems
