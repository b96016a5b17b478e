"""``genomhub upload``: how a region reports a sample from the command line."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import click

from services.receiver.client import LocalFile, Plan, Uploader, UploadError
from shared.config import ReceiverSettings, UploadSettings
from shared.events import AnalysisType, FileRole, Region


@click.command("upload")
@click.option("--region", required=True, type=click.Choice([r.value for r in Region]))
@click.option("--sample", "sample_id", required=True, help="Sample pseudonym (never a CPR number).")
@click.option("--patient", "patient_id", required=True, help="Patient pseudonym (never a CPR number).")
@click.option("--department", required=True, help="Reporting department, e.g. Rigshospitalet.")
@click.option("--analysis", required=True, type=click.Choice([a.value for a in AnalysisType]))
@click.option("--platform", default="ILLUMINA", show_default=True, help="Sequencing platform.")
@click.option(
    "--clinical",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Clinical pipeline output (CRAM, VCF); repeat for each.",
)
@click.option(
    "--url",
    default=None,
    help="Receiver base URL, https:// (plain http:// only to loopback) "
    "[default: http://127.0.0.1:<receiver port>].",
)
@click.option(
    "--token-env", default="GENOMHUB_UPLOAD_TOKEN", show_default=True, help="Env var with the token."
)
@click.option(
    "--ca-bundle",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="PEM CA bundle to verify the receiver with (NGC's own CA) [default: GENOMHUB_UPLOAD_CA_BUNDLE, "
    "else the system's CA store].",
)
@click.option("--submission", default=None, help="Continue this submission (after an interrupted run).")
@click.option("--retries", default=8, show_default=True, help="Retries of each step on network errors.")
@click.option(
    "--checksum/--no-checksum",
    default=True,
    show_default=True,
    help="Hash each file first and declare its sha256: checked end to end, and skipped if already archived.",
)
@click.argument("reads", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
def upload(
    region: str,
    sample_id: str,
    patient_id: str,
    department: str,
    analysis: str,
    platform: str,
    clinical: tuple[Path, ...],
    url: str | None,
    token_env: str,
    ca_bundle: Path | None,
    submission: str | None,
    retries: int,
    checksum: bool,
    reads: tuple[Path, ...],
) -> None:
    """Report one sample: its raw READS (e.g. R1.fastq.gz R2.fastq.gz) and clinical output.

    Progress goes to stderr; the last line on stdout is the submission id.
    """
    token = os.environ.get(token_env)
    if not token:
        raise click.UsageError(f"set the region's bearer token in ${token_env}")
    files = [LocalFile(p, FileRole.RAW_READS) for p in reads] + [
        LocalFile(p, FileRole.CLINICAL_OUTPUT) for p in clinical
    ]
    if not files:
        raise click.UsageError("name at least one file")
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise click.UsageError("two files share a name; the archive keeps files by name")
    plan = Plan(region, department, sample_id, patient_id, analysis, platform, files)
    base = url or f"http://127.0.0.1:{ReceiverSettings().port}"
    uploader = Uploader(base, token, retries=retries, ca_bundle=ca_bundle or UploadSettings().ca_bundle)
    try:
        sealed = asyncio.run(uploader.upload(plan, submission, checksum=checksum))
    except UploadError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"sealed: event {sealed['event_id']}, {len(sealed['files'])} files", err=True)
    click.echo(sealed["submission_id"])
