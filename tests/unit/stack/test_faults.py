"""What the fault test reads from the uploader's own words: which files it retried."""

from __future__ import annotations

from tools.stack.faults import retried_files


def test_a_retried_or_resumed_upload_is_found_and_an_untroubled_one_is_not() -> None:
    said = (
        "submission 0123 opened\n"
        "S1_R1.fastq.gz: resuming at byte 65536\n"
        "upload S1_R2.fastq.gz: ClientOSError: [Errno 104] Connection reset by peer; retrying in 0.5 s\n"
        "S1_R3.fastq.gz 100% 12 kB\n"
        "upload S1_R4.fastq.gz.md5: Retryable: HTTP 503; retrying in 1.0 s\n"
    )
    names = ["S1_R1.fastq.gz", "S1_R2.fastq.gz", "S1_R3.fastq.gz", "S1_R4.fastq.gz"]
    assert retried_files(said, names) == {"S1_R1.fastq.gz", "S1_R2.fastq.gz"}
