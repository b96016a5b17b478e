"""The local backend against the simulated truth: calls, genotypes, duplicates, CRAM header."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pysam

from services.harmoniser.layout import SampleLayout, collect, find_outputs
from services.validator.references import contig_md5s
from shared.encryption import ArchiveKey, body_size
from shared.storage import ArchiveWriter, open_archived
from tests.unit.harmoniser.conftest import LocalRun


def called(vcf: Path) -> dict[tuple[str, int], tuple[str, str, str]]:
    with pysam.VariantFile(str(vcf)) as handle:
        assert list(handle.header.samples) == ["S1"]  # bcftools reheader, as Sarek names it
        out = {}
        for rec in handle:
            gt = rec.samples["S1"]["GT"]
            assert rec.alleles is not None and rec.ref is not None
            alleles = [rec.alleles[i] for i in gt if i is not None]
            genotype = "1/1" if len(set(gt)) == 1 and gt[0] != 0 else "0/1"
            out[(rec.chrom, rec.pos)] = (rec.ref, ",".join(sorted(set(alleles) - {rec.ref})), genotype)
    return out


def test_every_planted_snp_is_called_with_its_genotype_and_nothing_else(local_run: LocalRun) -> None:
    calls = called(local_run.outdir / SampleLayout("S1").vcf)
    truth = {(s.contig, s.pos): (s.ref, s.alt, s.genotype) for s in local_run.truth.snps}
    assert len(truth) == 100 and sum(g == "1/1" for _, _, g in truth.values()) == 33
    missed = {k: v for k, v in truth.items() if k not in calls}
    wrong = {k: (v, calls[k]) for k, v in truth.items() if k in calls and calls[k] != v}
    false_positives = {k: v for k, v in calls.items() if k not in truth}
    assert not missed, f"planted SNPs not called: {missed}"
    assert not wrong, f"wrong genotype or allele (truth, call): {wrong}"
    assert not false_positives, f"calls that were not planted: {false_positives}"


def test_marked_duplicate_rate_matches_the_simulated_one(local_run: LocalRun) -> None:
    metrics = (local_run.outdir / SampleLayout("S1").markduplicates_metrics).read_text()
    examined = int(re.search(r"^EXAMINED: (\d+)", metrics, re.M).group(1))  # type: ignore[union-attr]
    duplicate_reads = int(re.search(r"^DUPLICATE PAIR: (\d+)", metrics, re.M).group(1))  # type: ignore[union-attr]
    marked = duplicate_reads / examined
    simulated = local_run.truth.duplicate_fraction
    assert examined == 2 * local_run.truth.pairs
    assert abs(marked - simulated) < 0.002, (marked, simulated)


def test_cram_header_is_sorted_with_sareks_read_group_and_reference_md5s(local_run: LocalRun) -> None:
    cram = local_run.outdir / SampleLayout("S1").cram
    assert cram.read_bytes()[:6] == b"CRAM\x03\x00"  # CRAM 3.0
    assert Path(f"{cram}.crai").stat().st_size > 0
    with pysam.AlignmentFile(str(cram), "rc", reference_filename=str(local_run.fasta)) as handle:
        header = handle.header.to_dict()
    assert header["HD"]["SO"] == "coordinate"
    [group] = header["RG"]
    assert group["ID"] == f"{local_run.truth.flowcell}.S1.1"
    assert (group["PU"], group["SM"], group["LB"], group["PL"]) == ("1", "P1_S1", "S1", "ILLUMINA")
    md5s = contig_md5s(local_run.fasta)
    assert {sq["SN"]: (sq["LN"], sq["M5"]) for sq in header["SQ"]} == md5s
    bwa = next(pg for pg in header["PG"] if pg["ID"] == "bwa")
    assert "bwa mem -K 100000000 -Y" in bwa["CL"]


def test_layout_and_trace_follow_sarek(local_run: LocalRun) -> None:
    found = {f.relative: f.kind for f in find_outputs(local_run.outdir, "S1")}
    assert found["preprocessing/markduplicates/S1/S1.md.cram"] == "cram"
    assert found["preprocessing/markduplicates/S1/S1.md.cram.crai"] == "crai"
    assert found["variant_calling/bcftools/S1/S1.bcftools.vcf.gz"] == "vcf"
    assert found["variant_calling/bcftools/S1/S1.bcftools.vcf.gz.tbi"] == "tbi"
    assert found["reports/markduplicates/S1/S1.md.cram.metrics"] == "report"
    assert found["reports/bcftools/S1/S1.bcftools.bcftools_stats.txt"] == "report"
    traces = [k for k, v in found.items() if v == "pipeline_info" and "execution_trace_" in k]
    assert len(traces) == 1
    from services.harmoniser.steps import parse_trace, trace_summary

    records = parse_trace(local_run.outdir / traces[0])
    assert trace_summary(records) == {"COMPLETED": 3}
    assert [r["name"].split()[0] for r in records] == [
        "MAPPING_MARKDUPLICATES",
        "BCFTOOLS_MPILEUP",
        "BCFTOOLS_STATS",
    ]


def test_collector_archives_the_outputs_encrypted_with_their_checksums(
    local_run: LocalRun, tmp_path: Path, archive_writer: ArchiveWriter, archive_key: ArchiveKey
) -> None:
    store = (tmp_path / "store").as_uri()
    outputs = collect(
        local_run.outdir, "S1", f"{store}/harmonised/sub-1", archive_writer, "genomhub-local-germline 0.1.0"
    )
    by_name = {o.name: o for o in outputs}
    cram = by_name["preprocessing/markduplicates/S1/S1.md.cram"]
    data = (local_run.outdir / cram.name).read_bytes()
    assert cram.url == f"{store}/harmonised/sub-1/preprocessing/markduplicates/S1/S1.md.cram"
    assert (cram.size, cram.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert Path(cram.url.removeprefix("file://")).stat().st_size == body_size(len(data))
    assert all(archive_writer.headers.exists(o.url) for o in outputs)
    with open_archived(cram.url, cram.size, archive_writer.headers, archive_key) as archived:
        assert archived.read() == data
    assert {o.provenance for o in outputs} == {"genomhub-local-germline 0.1.0"}
