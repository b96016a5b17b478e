"""Carrying out the validator's harmonisation decision for one submission.

The policy was decided upstream (the validator is the one place that decides); here it is
only executed: the raw reads named in ``pipeline_inputs`` go through the pipeline, the
conforming clinical files named in ``passthrough`` are registered as harmonised output as
they are (already archived by the receiver, so they are referenced, never copied), and the
result becomes one harmonised event.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path
from typing import Literal, Protocol

from services.harmoniser.inputs import InputError, SampleReads, arrange_lanes
from services.harmoniser.layout import CollectError, OutputLayout, collect
from services.harmoniser.steps import PipelineFailed, ProcessHook
from shared.encryption import EncryptionError
from shared.events import CheckedFile, FileRole, Harmonised, OutputFile, Provenance, Validated
from shared.paths import beneath
from shared.storage import ArchiveReader, ArchiveWriter

PASSTHROUGH_PIPELINE = "clinical-output-passthrough"
INPUTS = "inputs"
"""The run's folder of decrypted inputs: there only while the run is."""


class Backend(Protocol):
    name: str

    def parameters(self, reads: SampleReads) -> dict[str, object]: ...

    def layout(self, reads: SampleReads) -> OutputLayout:
        """Where the run publishes the sample's files."""
        ...

    def pipeline(self, reads: SampleReads) -> tuple[str, str] | None:
        """(pipeline, release) that harmonises ``reads``, when not the harmoniser's configured one."""
        ...

    async def run(self, reads: SampleReads, rundir: Path, resume: bool, on_process: ProcessHook) -> Path: ...


def output_kind(name: str) -> str:
    lower = name.lower()
    for suffix, kind in (
        (".cram.crai", "crai"),
        (".crai", "crai"),
        (".cram", "cram"),
        (".bam.bai", "bai"),
        (".bai", "bai"),
        (".bam", "bam"),
        (".vcf.gz.tbi", "tbi"),
        (".tbi", "tbi"),
        (".vcf.gz", "vcf"),
        (".vcf", "vcf"),
    ):
        if lower.endswith(suffix):
            return kind
    return "clinical_output"


def passthrough_outputs(validated: Validated, guideline_version: str) -> list[OutputFile]:
    """The conforming clinical files kept as harmonised output, where the receiver archived them."""
    wanted = set(validated.harmonisation.passthrough)
    files = [f for f in validated.files if f.name in wanted]
    missing = wanted - {f.name for f in files}
    if missing:
        raise PipelineFailed(f"passthrough files not among the validated files: {sorted(missing)}")
    for f in files:
        if f.role != FileRole.CLINICAL_OUTPUT or f.conforms is False:
            raise PipelineFailed(f"{f.name} is not conforming clinical output, so it cannot pass through")
    return [
        OutputFile(
            name=f.name,
            kind=output_kind(f.name),
            url=f.url,
            size=f.size,
            sha256=f.sha256,
            provenance=f"clinical output, conforms to guideline set {guideline_version}",
        )
        for f in files
    ]


class Harmoniser:
    """Runs a submission's decision with one backend and archives the outputs."""

    def __init__(
        self,
        backend: Backend,
        *,
        store_url: str,
        writer: ArchiveWriter,
        pipeline: str,
        pipeline_version: str,
        reference: str,
        guideline_version: str,
        archive: ArchiveReader,
        rerun_release: str | None = None,
    ) -> None:
        """``rerun_release``: this harmoniser runs a reanalysis campaign's Sarek release, and
        writes each sample's outputs beside those of its harmonisation at intake, never over them."""
        self.backend = backend
        self.rerun_release = rerun_release
        self.archive = archive
        self.store_url = store_url
        self.writer = writer
        self.pipeline = pipeline
        self.pipeline_version = pipeline_version
        self.reference = reference
        self.guideline_version = guideline_version

    def sample_reads(self, validated: Validated, inputs: Path) -> SampleReads:
        """The sample's lanes, each read decrypted into ``inputs`` (the run's scratch space):
        Sarek, bwa and samtools read plaintext paths, and everything after this reads those."""
        decision = validated.harmonisation
        wanted = {f.name: f for f in validated.files if f.name in decision.pipeline_inputs}
        missing = set(decision.pipeline_inputs) - set(wanted)
        if missing:
            raise PipelineFailed(f"pipeline inputs not among the validated files: {sorted(missing)}")
        stamp = validated.submission.received_at.timestamp()
        files = {name: self.stage(f, inputs, stamp).as_uri() for name, f in sorted(wanted.items())}
        try:
            lanes = arrange_lanes(files, validated.submission.platform)
        except (InputError, OSError) as exc:
            raise PipelineFailed(f"cannot arrange the raw reads into lanes: {exc}") from exc
        return SampleReads(validated.submission.patient_id, validated.submission.sample_id, tuple(lanes))

    def stage(self, file: CheckedFile, inputs: Path, stamp: float) -> Path:
        """``file``'s plaintext at ``inputs/<name>``, every segment authenticated on the way.

        Its modification time is the submission's reception, the same on every attempt, so
        that a relaunched Sarek run (``-resume``) finds its cached tasks' inputs unchanged."""
        inputs.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = beneath(inputs, file.name)
        try:
            self.archive.copy_to(file.url, file.size, target)
        except EncryptionError as exc:
            raise PipelineFailed(f"{file.name} cannot be read from the archive: {exc}") from exc
        os.utime(target, (stamp, stamp))
        return target

    async def execute(
        self, validated: Validated, rundir: Path, resume: bool, on_process: ProcessHook
    ) -> tuple[list[OutputFile], Provenance]:
        """Outputs and provenance of the decision; raises :class:`PipelineFailed`."""
        started = time.monotonic()
        kept = passthrough_outputs(validated, self.guideline_version)
        if not validated.harmonisation.needs_harmonisation:
            return kept, Provenance(
                pipeline=PASSTHROUGH_PIPELINE,
                pipeline_version=self.guideline_version,
                reference=validated.reference_profile,
                parameters={
                    "policy": validated.harmonisation.policy.value,
                    "guideline_set": self.guideline_version,
                },
                duration_s=round(time.monotonic() - started, 3),
            )
        inputs = rundir / INPUTS
        try:
            reads = await asyncio.to_thread(self.sample_reads, validated, inputs)
            outdir = await self.backend.run(reads, rundir, resume, on_process)
        finally:
            # Whatever the outcome (done, failed, cancelled, the lease lost), no plaintext
            # outlives the run; shielded, so that a second cancellation cannot cut it short.
            await asyncio.shield(asyncio.to_thread(shutil.rmtree, inputs, True))
        prefix = beneath(self.store_url, "harmonised", validated.submission.submission_id)
        if self.rerun_release is not None:
            prefix = beneath(prefix, f"sarek-{self.rerun_release}")
        pipeline, pipeline_version = self.backend.pipeline(reads) or (self.pipeline, self.pipeline_version)
        try:
            made = await asyncio.to_thread(
                collect,
                outdir,
                reads.sample,
                prefix,
                self.writer,
                f"{pipeline} {pipeline_version}",
                self.backend.layout(reads),
            )
        except CollectError as exc:
            raise PipelineFailed(str(exc)) from exc
        parameters = {"policy": validated.harmonisation.policy.value, **self.backend.parameters(reads)}
        return made + kept, Provenance(
            pipeline=pipeline,
            pipeline_version=pipeline_version,
            reference=self.reference,
            parameters=parameters,
            duration_s=round(time.monotonic() - started, 3),
        )

    def failed_provenance(self, validated: Validated, duration_s: float) -> Provenance:
        return Provenance(
            pipeline=self.pipeline if validated.harmonisation.needs_harmonisation else PASSTHROUGH_PIPELINE,
            pipeline_version=self.pipeline_version,
            reference=self.reference,
            parameters={"policy": validated.harmonisation.policy.value, "backend": self.backend.name},
            duration_s=round(max(duration_s, 0.0), 3),
        )


def harmonised_event(
    validated: Validated,
    status: Literal["succeeded", "failed"],
    outputs: list[OutputFile],
    provenance: Provenance,
    attempts: int,
    log_tail: str = "",
    campaign_id: str | None = None,
) -> Harmonised:
    return Harmonised(
        submission=validated.submission,
        status=status,
        files=validated.files,
        genome_equivalents=validated.genome_equivalents,
        raw_bases=validated.raw_bases,
        outputs=outputs,
        provenance=provenance,
        attempts=max(attempts, 1),
        log_tail=log_tail,
        campaign_id=campaign_id,
    )
