"""``genomhub validate``: the validator's checks offline, for a region to pre-check its files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from services.validator.references import decoding_reference, reference_needed
from services.validator.sniff import CRAM, sniff
from services.validator.sources import head
from services.validator.validation import InProcess, Outcome, validate, worker_pool
from services.validator.validation import InputFile as Input
from shared.config import ValidatorSettings
from shared.events import AnalysisType, Verdict
from shared.profiles import GRCH38, REFERENCE_PROFILES, SYNTHETIC_NAME


def report_json(outcome: Outcome) -> str:
    return json.dumps(
        {
            "verdict": outcome.verdict.value,
            "reference_profile": outcome.reference_profile,
            "genome_equivalents": format(outcome.genome_equivalents, "f"),
            "raw_bases": outcome.raw_bases,
            "raw_reads": outcome.raw_reads,
            "harmonisation": outcome.harmonisation.model_dump(mode="json"),
            "files": [
                {
                    "name": o.file.name,
                    "role": o.role.value,
                    "detected_type": o.findings.detected_type,
                    "metrics": o.findings.metrics,
                    "problems": [p.model_dump(mode="json") for p in o.findings.problems],
                    "conforms": o.conforms,
                    "accepted": o.accepted,
                }
                for o in outcome.files
            ],
        },
        indent=2,
    )


def report_text(outcome: Outcome) -> str:
    lines = [
        f"verdict: {outcome.verdict.value.upper()}  (reference profile {outcome.reference_profile})",
        f"genome equivalents: {outcome.genome_equivalents}  raw reads: {outcome.raw_reads}  "
        f"raw bases: {outcome.raw_bases}",
        f"harmonisation ({outcome.harmonisation.policy.value}): "
        + ("needed" if outcome.harmonisation.needs_harmonisation else "not needed"),
    ]
    lines += [f"  - {reason}" for reason in outcome.harmonisation.reasons]
    for o in outcome.files:
        state = "accepted" if o.accepted else "not accepted"
        conform = "" if o.conforms is None else f", {'conforms' if o.conforms else 'does not conform'}"
        lines.append(f"\n{o.file.name}: {o.findings.detected_type} ({o.role.value}), {state}{conform}")
        shown = {k: v for k, v in o.findings.metrics.items() if v not in (None, "")}
        lines.append("  " + "  ".join(f"{k}={v}" for k, v in shown.items()))
        for p in o.findings.problems:
            where = f" at {p.location}" if p.location else ""
            lines.append(f"  {p.severity.upper()} {p.code}{where}: {p.message}")
    return "\n".join(lines)


@click.command("validate")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--reference-profile",
    "profile",
    type=click.Choice(REFERENCE_PROFILES),
    default=GRCH38,
    show_default=True,
    help=f"The build the files must be made against: GRCh38, as NGC requires ({SYNTHETIC_NAME}: the project's synthetic reference, for the tests).",
)
@click.option(
    "--reference",
    "reference",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="FASTA (with .fai) that CRAMs were made against, to decode them. Default: GENOMHUB_REFERENCE_FASTA.",
)
@click.option(
    "--analysis-type",
    type=click.Choice([a.value for a in AnalysisType]),
    default=AnalysisType.WGS.value,
    show_default=True,
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def validate_command(
    files: tuple[Path, ...], profile: str, reference: Path | None, analysis_type: str, as_json: bool
) -> None:
    """Check FILES as the validator would, before uploading them; exit 1 if they would be rejected.

    The files are held to GRCh38, the build NGC requires, unless --reference-profile says
    otherwise. A CRAM is decoded against the FASTA it was made against, so checking one
    needs that FASTA (--reference or GENOMHUB_REFERENCE_FASTA); without it the command
    says so and checks nothing.
    """
    settings = ValidatorSettings()
    reference = decoding_reference(settings.reference.fasta, reference.resolve() if reference else None)
    if reference is None and profile == SYNTHETIC_NAME:
        raise click.UsageError(
            f"the {SYNTHETIC_NAME} profile is read from its FASTA: give --reference FASTA or set "
            "GENOMHUB_REFERENCE_FASTA"
        )
    if reference is None:
        crams = [p.name for p in files if sniff(head(p.resolve().as_uri())).kind == CRAM]
        if crams:
            raise click.UsageError(f"{', '.join(crams)}: {reference_needed(profile)}")
    inputs = [Input(p.name, p.resolve().as_uri()) for p in files]
    executor = (
        worker_pool(
            min(settings.workers, len(inputs)), fork=True, s3_endpoint=settings.archive.s3_endpoint_url
        )
        if len(inputs) > 1
        else InProcess()
    )
    try:
        outcome = validate(inputs, settings, AnalysisType(analysis_type), executor, profile, reference)
    finally:
        executor.shutdown()
    click.echo(report_json(outcome) if as_json else report_text(outcome))
    sys.exit(0 if outcome.verdict is Verdict.ACCEPTED else 1)
