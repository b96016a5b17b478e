"""Which nf-core pipeline harmonises a sample on the HPC: the one place that decides.

The decision is made from the sequencing technology of the sample's lanes, which
:func:`shared.platforms.sequencing_technology` derives from the platform (never from the
container: an Illumina uBAM is short reads, ONT reads may come as FASTQ):

- short reads go to nf-core/sarek, whose aligners (bwa-mem, bwa-mem2, dragmap) are short-read
  aligners and whose ``bam`` column at ``--step mapping`` is an unaligned short-read BAM;
- PacBio reads go to nf-core/pacvar (release 1.0.1: pbmm2 alignment, DeepVariant with its
  PacBio model, pbsv, HiPhase), the one nf-core pipeline with a release that takes a PacBio
  uBAM for germline WGS. Its samplesheet has one BAM per sample, and 1.0.1 cannot merge
  several (pbmerge arrives after it), so a sample of more PacBio BAMs, or of PacBio FASTQ,
  is refused with a reason;
- ONT reads are refused on the HPC: no nf-core pipeline with a release takes ONT reads for
  germline WGS with a parameter schema we could read and pin (nf-core/nanoseq is built
  around demultiplexing and transcripts; the releases in the index are 1.x, FASTQ only,
  without variant calling), and genomic-medicine-sweden/nallo, which takes ONT uBAMs, wants a
  pedigree and a sex of 1 or 2 for every sample, which a submission does not carry. The
  embedded ``local`` backend harmonises ONT reads with minimap2's ``map-ont`` preset;
- a sample that mixes technologies is refused: no single pipeline takes both.

Refusals happen before anything is written or launched.
"""

from __future__ import annotations

from enum import StrEnum

from services.harmoniser.inputs import SampleReads
from services.harmoniser.steps import PipelineFailed
from shared.platforms import Technology


class HpcPipeline(StrEnum):
    """An nf-core pipeline the HPC runs, by its Nextflow name."""

    SAREK = "nf-core/sarek"
    PACVAR = "nf-core/pacvar"


class LongReadsRefused(PipelineFailed):
    """Reads that no pipeline the HPC runs can harmonise as they are."""


LOCAL_HINT = "harmonise them with the local backend (minimap2 with the platform's preset)"


def hpc_pipeline(reads: SampleReads) -> HpcPipeline:
    """The pipeline that harmonises ``reads`` on the HPC, or :class:`LongReadsRefused` saying why none."""
    technologies = {lane.technology for lane in reads.lanes}
    if len(technologies) > 1:
        kinds = " and ".join(sorted(t.value for t in technologies))
        raise LongReadsRefused(f"sample {reads.sample} mixes {kinds} reads; no one pipeline takes both")
    (technology,) = technologies
    if technology is Technology.SHORT_READ:
        return HpcPipeline.SAREK
    if technology is Technology.ONT:
        raise LongReadsRefused(
            f"sample {reads.sample} has ONT long reads, and no nf-core pipeline the HPC runs takes ONT "
            f"reads for germline WGS (nf-core/sarek has no long-read aligner); {LOCAL_HINT}"
        )
    fastq = [lane.lane for lane in reads.lanes if lane.bam is None]
    if fastq:
        raise LongReadsRefused(
            f"sample {reads.sample} has PACBIO long reads as FASTQ (lanes {', '.join(fastq)}); "
            f"nf-core/pacvar takes PacBio BAMs only; {LOCAL_HINT}"
        )
    if len(reads.lanes) > 1:
        raise LongReadsRefused(
            f"sample {reads.sample} has {len(reads.lanes)} PACBIO BAMs; nf-core/pacvar 1.0.1 takes one BAM "
            f"per sample (merge them with pbmerge before submitting), or {LOCAL_HINT}"
        )
    return HpcPipeline.PACVAR
