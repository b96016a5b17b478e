"""Problem codes: one stable code per way a file can be wrong.

Uploaders act on codes, so each kind of bad input gets its own and keeps it. Everything
that can go wrong with a file becomes a :class:`Problem`; a file is never dropped silently.
"""

from __future__ import annotations

from typing import Literal

from shared.events import Problem

Severity = Literal["error", "warning"]

WARNINGS = frozenset(
    {
        "fastq.single_end",
        "policy.clinical_output_not_accepted",
        "policy.clinical_output_missing",
        "vcf.not_indexed",
        "bam.htslib_warning",
        "cram.htslib_warning",
        "ubam.htslib_warning",
        "vcf.htslib_warning",
        "vcf.reserved_field_declaration",
    }
)
"""Codes that inform but do not keep a file from being accepted; every other code is an error."""


def problem(code: str, message: str, location: str = "") -> Problem:
    severity: Severity = "warning" if code in WARNINGS else "error"
    return Problem(code=code, message=message, location=location, severity=severity)


def has_errors(problems: list[Problem]) -> bool:
    return any(p.severity == "error" for p in problems)
