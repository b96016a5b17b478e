"""What an uploader sees of an upload's progress, on a terminal and in a log."""

from __future__ import annotations

import io

from services.receiver.client import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_a_plain_line_every_tenth_of_the_way() -> None:
    log = io.StringIO()
    progress = Progress("S1_R1.fastq.gz", 1000, log)
    for _ in range(20):
        progress.advance(50)
    progress.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("S1_R1.fastq.gz:  10.0%")
    assert lines[-1].startswith("S1_R1.fastq.gz: 100.0%")
    assert "\r" not in log.getvalue() and "\x1b" not in log.getvalue()


def test_a_resumed_upload_counts_from_where_it_resumed() -> None:
    log = io.StringIO()
    progress = Progress("S1_R1.fastq.gz", 1000, log, start=500)
    progress.advance(100)
    progress.close()
    assert log.getvalue().startswith("S1_R1.fastq.gz:  60.0%")


def test_a_terminal_gets_a_bar_that_ends_at_the_whole_file() -> None:
    terminal = Terminal()
    progress = Progress("S1_R1.fastq.gz", 2_000_000, terminal)
    for _ in range(4):
        progress.advance(500_000)
    progress.close()
    last_frame = terminal.getvalue().rsplit("\r", 1)[-1]
    assert "S1_R1.fastq.gz" in last_frame
    assert "2.0/2.0 MB" in last_frame
    assert terminal.getvalue().endswith("\n\x1b[?25h"), "the bar ends its line and shows the cursor again"
