"""Carrying out the validator's harmonisation decision for one submission.

The policy was decided upstream (the validator is the one place that decides); here it is
only executed: the raw reads named in ``pipeline_inputs`` go through the pipeline, the
conforming clinical files named in ``passthrough`` are registered as harmonised output as
they are (already archived by the receiver, so they are referenced, never copied), and the
result becomes one harmonised event.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Literal, Protocol

from services.harmoniser.inputs import InputError, SampleReads, arrange_lanes
from services.harmoniser.layout import CollectError, OutputLayout, collect
from services.harmoniser.steps import PipelineFailed, ProcessHook
from shared.events import FileRole, Harmonised, OutputFile, Provenance, Validated
from shared.paths import beneath
from shared.storage import ArchiveWriter

PASSTHROUGH_PIPELINE = "clinical-output-passthrough"


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
    ) -> None:
        self.backend = backend
        self.store_url = store_url
        self.writer = writer
        self.pipeline = pipeline
        self.pipeline_version = pipeline_version
        self.reference = reference
        self.guideline_version = guideline_version

    def sample_reads(self, validated: Validated) -> SampleReads:
        decision = validated.harmonisation
        files = {f.name: f.url for f in validated.files if f.name in decision.pipeline_inputs}
        missing = set(decision.pipeline_inputs) - set(files)
        if missing:
            raise PipelineFailed(f"pipeline inputs not among the validated files: {sorted(missing)}")
        try:
            lanes = arrange_lanes(files, validated.submission.platform)
        except (InputError, OSError) as exc:
            raise PipelineFailed(f"cannot arrange the raw reads into lanes: {exc}") from exc
        return SampleReads(validated.submission.patient_id, validated.submission.sample_id, tuple(lanes))

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
        reads = await asyncio.to_thread(self.sample_reads, validated)
        outdir = await self.backend.run(reads, rundir, resume, on_process)
        prefix = beneath(self.store_url, "harmonised", validated.submission.submission_id)
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
    )
