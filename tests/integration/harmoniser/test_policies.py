"""Each harmonisation policy end to end through the real broker and a real harmoniser process."""

from __future__ import annotations

import uuid

from services.harmoniser.jobs import JobStore
from shared.bus import new_event_id
from shared.config import HarmoniserSettings
from shared.envelope import derive_id
from shared.events import FileRole, HarmonisationPolicy, Harmonised
from shared.storage import ArchiveReader
from tests.integration.harmoniser.conftest import Inputs, harmonised, send, traceparent
from tests.support import Process, wait_for
from tests.unit.harmoniser.factory import checked, validated

SAREK_FILES = {
    "preprocessing/markduplicates/{s}/{s}.md.cram": "cram",
    "preprocessing/markduplicates/{s}/{s}.md.cram.crai": "crai",
    "variant_calling/bcftools/{s}/{s}.bcftools.vcf.gz": "vcf",
    "variant_calling/bcftools/{s}/{s}.bcftools.vcf.gz.tbi": "tbi",
}
CLINICAL = "clinical output, conforms to guideline set ngc-clinical-output-2026.1"


def test_the_four_policies_end_to_end(
    archive: ArchiveReader, kafka_bootstrap: str, harmoniser: Process, harmoniser_inputs: Inputs
) -> None:
    run = uuid.uuid4().hex[:8]
    fastq = [checked(p, FileRole.RAW_READS, "fastq", archive=archive) for p in harmoniser_inputs.fastq]
    vcf = checked(
        harmoniser_inputs.clinical_vcf, FileRole.CLINICAL_OUTPUT, "vcf", conforms=True, archive=archive
    )
    tbi = checked(
        harmoniser_inputs.clinical_tbi, FileRole.CLINICAL_OUTPUT, "tbi", conforms=True, archive=archive
    )
    cases = {
        HarmonisationPolicy.HARMONISE_AND_STORE: validated(
            f"{run}-1",
            f"S{run}A",
            [*fastq, vcf],
            HarmonisationPolicy.HARMONISE_AND_STORE,
            needs_harmonisation=True,
        ),
        HarmonisationPolicy.INTERNATIONAL: validated(
            f"{run}-2", f"S{run}B", fastq, HarmonisationPolicy.INTERNATIONAL, needs_harmonisation=True
        ),
        HarmonisationPolicy.PARTIAL: validated(
            f"{run}-3",
            f"S{run}C",
            [*fastq, vcf],
            HarmonisationPolicy.PARTIAL,
            needs_harmonisation=True,
            passthrough=[vcf.name],
        ),
        HarmonisationPolicy.NATIONAL: validated(
            f"{run}-4",
            f"S{run}D",
            [vcf, tbi],
            HarmonisationPolicy.NATIONAL,
            needs_harmonisation=False,
            passthrough=[vcf.name, tbi.name],
        ),
    }
    rejected = validated(
        f"{run}-0",
        f"S{run}A",
        fastq,
        HarmonisationPolicy.HARMONISE_AND_STORE,
        needs_harmonisation=True,
        accepted=False,
    )
    ids = {policy: new_event_id() for policy in cases}
    trace_id = send([(rejected, new_event_id()), *((event, ids[p]) for p, event in cases.items())])

    found = {
        policy: wait_for(
            lambda e=event: harmonised(kafka_bootstrap, e.submission.submission_id),
            timeout=150,
            what=f"harmonised of {policy.value}",
        )
        for policy, event in cases.items()
    }
    assert harmonised(kafka_bootstrap, rejected.submission.submission_id) == []  # rejected: nothing to do

    for policy, emitted in found.items():
        # At-least-once: a producer retry may repeat a record, but always the same event.
        assert len({(i, e.model_dump_json()) for _, e, i in emitted}) == 1, emitted
        record, event, event_id = emitted[0]
        source = cases[policy]
        assert event_id == derive_id(ids[policy], "harmoniser", Harmonised.ce_type())
        assert traceparent(record).split("-")[1] == trace_id  # one trace for the submission
        assert event.status == "succeeded" and event.attempts == 1 and event.log_tail == ""
        assert event.files == source.files and event.raw_bases == source.raw_bases
        assert event.genome_equivalents == source.genome_equivalents
        assert event.provenance.parameters["policy"] == policy.value
        for output in event.outputs:
            assert output.url.startswith("file://") and len(output.sha256) == 64 and output.size > 0
        by_name = {o.name: o for o in event.outputs}
        sample = source.submission.sample_id
        if source.harmonisation.needs_harmonisation:
            assert event.provenance.pipeline == "genomhub-local-germline"
            assert event.provenance.reference == "synthetic-v1"
            assert event.provenance.parameters["mirrors"] == "nf-core/sarek 3.5.1"
            assert event.provenance.duration_s > 0
            for pattern, kind in SAREK_FILES.items():
                name = pattern.format(s=sample)
                assert by_name[name].kind == kind
                assert f"/harmonised/{source.submission.submission_id}/{name}" in by_name[name].url
        else:
            assert not any(n.startswith("preprocessing/") for n in by_name)
            assert event.provenance.pipeline == "clinical-output-passthrough"
        kept = [o for o in event.outputs if o.provenance == CLINICAL]
        assert sorted(o.name for o in kept) == sorted(source.harmonisation.passthrough)
        for output in kept:
            original = next(f for f in source.files if f.name == output.name)
            assert (output.url, output.sha256, output.size) == (original.url, original.sha256, original.size)

    # A replayed validated event does not run the finished job again: it re-emits its event.
    policy = HarmonisationPolicy.INTERNATIONAL
    before = len(found[policy])
    send([(cases[policy], ids[policy])])
    again = wait_for(
        lambda: (lambda r: r if len(r) > before else None)(
            harmonised(kafka_bootstrap, cases[policy].submission.submission_id)
        ),
        what="the re-emitted harmonised event",
    )
    assert {(i, e.model_dump_json()) for _, e, i in again} == {
        (found[policy][0][2], found[policy][0][1].model_dump_json())
    }
    job = JobStore(HarmoniserSettings().database_url).get(cases[policy].submission.submission_id)
    assert job is not None and job.attempts == 1 and job.state == "succeeded"


def test_a_failing_run_is_retried_then_reported_failed(
    archive: ArchiveReader, kafka_bootstrap: str, harmoniser: Process, harmoniser_inputs: Inputs
) -> None:
    run = uuid.uuid4().hex[:8]
    fastq = [checked(p, FileRole.RAW_READS, "fastq", archive=archive) for p in harmoniser_inputs.broken_fastq]
    event = validated(
        f"{run}-f", f"S{run}F", fastq, HarmonisationPolicy.INTERNATIONAL, needs_harmonisation=True
    )
    send([(event, new_event_id())])
    [(_, out, _)] = wait_for(lambda: harmonised(kafka_bootstrap, event.submission.submission_id), timeout=120)
    assert out.status == "failed" and out.attempts == 2 and out.outputs == []
    assert "exited with status" in out.log_tail and "paired reads have different names" in out.log_tail
    assert out.provenance.pipeline == "genomhub-local-germline"
