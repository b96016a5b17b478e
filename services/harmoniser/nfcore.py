"""An nf-core pipeline's run on the HPC: its samplesheet and the start of its command line.

The samplesheet is checked against the pipeline's own input rules before it is written, so
a run the pipeline would refuse at start-up is refused here, with the reason.

Sarek and pacvar each give their columns, the required ones, a pattern per column (with the
message the pipeline's schema gives) and what must be unique per row; the checks common to
every nf-core samplesheet are written once here, and a pipeline adds its own rows' rules.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from services.harmoniser.steps import PipelineFailed
from shared.spreadsheet import SafeDictWriter, formula_risk

Row = dict[str, str]


def nextflow_run(
    nextflow: str,
    pipeline: str,
    version: str,
    profile: str,
    *,
    workdir: Path,
    trace: Path,
    config: Path | None,
    resume: bool,
) -> list[str]:
    """``nextflow run <pipeline> -r <version> -profile <site>`` with the work folder, the trace,
    the site's config and ``-resume``: the part of the command line every pipeline shares."""
    command = [nextflow, "run", pipeline, "-r", version, "-profile", profile]
    command += ["-work-dir", str(workdir), "-with-trace", str(trace)]
    if config is not None:
        command += ["-c", str(config)]
    if resume:
        command.append("-resume")
    return command


def _no_more_rules(_line: int, _row: Row) -> list[str]:
    return []


@dataclass(frozen=True)
class SamplesheetRules:
    """What a pipeline's input schema asks of its samplesheet."""

    pipeline: str
    columns: tuple[str, ...]
    required: tuple[str, ...]
    patterns: dict[str, tuple[re.Pattern[str], str]]
    """Per column, the pattern a non-empty value must match and what is said when it does not."""
    unique: tuple[str, ...]
    """The columns whose values together appear once (Sarek: sample and lane)."""
    duplicate: Callable[[tuple[str, ...]], str]
    """What is said of a row whose ``unique`` values came before."""
    row_rules: Callable[[int, Row], list[str]] = field(default=_no_more_rules)
    """The pipeline's own rules of one row (Sarek's for ``--step mapping``)."""


def rule_breaks(rows: list[Row], rules: SamplesheetRules) -> list[str]:
    """What the pipeline would refuse in ``rows``, by line number after the header."""
    problems = []
    seen: set[tuple[str, ...]] = set()
    for n, row in enumerate(rows, start=2):
        for column in rules.required:
            if not row.get(column):
                problems.append(f"line {n}: {column} is required")
        for column, value in row.items():
            if column not in rules.patterns:
                problems.append(f"line {n}: unknown column {column}")
            elif value and not rules.patterns[column][0].search(value):
                problems.append(f"line {n}: {rules.patterns[column][1]} ({value!r})")
            elif formula_risk(value):
                # Not quoted as in a finance file: the pipeline must see the id as it is. Refused,
                # since a spreadsheet would run it and a tool may take a leading '-' as an option.
                problems.append(f"line {n}: {column} must not start with = + - @, a tab or CR")
        problems += rules.row_rules(n, row)
        key = tuple(row.get(column, "") for column in rules.unique)
        if key in seen:
            problems.append(f"line {n}: {rules.duplicate(key)}")
        seen.add(key)
    return problems


def write_checked(rows: list[Row], path: Path, rules: SamplesheetRules) -> Path:
    """The samplesheet at ``path``, or :class:`PipelineFailed` naming every rule it breaks."""
    problems = rule_breaks(rows, rules)
    if problems:
        raise PipelineFailed(f"the samplesheet breaks {rules.pipeline}'s rules: " + "; ".join(problems))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = SafeDictWriter(handle, rules.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path
