"""Genome equivalents (genomækvivalenter), the unit the NNF grant refunds (design.md section 7).

Two configured rules. ``bases``: the sequenced bases of the raw reads (FASTQ or uBAM;
CRAM only when no raw reads were reported) over 30 x 3.1e9. ``analysis``: a configured
weight per analysis type. Either way a sample counts once: its files are summed into one
figure, and a CRAM of the same reads is never added to them.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from shared.config import GenomeEquivalentSettings
from shared.events import AnalysisType

QUANTUM = Decimal("0.000001")


def genome_equivalents(
    rule: GenomeEquivalentSettings, analysis_type: AnalysisType, raw_bases: int, aligned_bases: int
) -> Decimal:
    if rule.rule == "analysis":
        weight = rule.analysis_weights.get(analysis_type.value)
        if weight is None:
            raise ValueError(f"no genome-equivalent weight configured for {analysis_type.value!r}")
        return Decimal(weight).quantize(QUANTUM, ROUND_HALF_UP)
    bases = raw_bases if raw_bases > 0 else aligned_bases
    return (Decimal(bases) / Decimal(rule.bases_per_genome)).quantize(QUANTUM, ROUND_HALF_UP)
