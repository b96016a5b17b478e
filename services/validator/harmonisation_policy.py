"""The harmonisation policy: the one place that decides what NGC harmonises (design.md section 6).

The working group put four models to NGC without choosing; the system supports each as a
setting. Given what a submission holds (raw reads, clinical CRAM/VCF, whether each is
sound and whether clinical output meets the national guidelines), the policy decides which
files are accepted, whether Sarek must run and on which raw files, which conforming
clinical files stand as harmonised output, and when a submission cannot be taken at all.
The harmoniser only carries out this decision.

1. harmonise-and-store: FASTQ and clinical output reported; clinical output kept; NGC
   harmonises from the FASTQ.
2. international: only FASTQ; NGC harmonises; clinical output stays in the region.
3. partial: FASTQ, optionally clinical output, accepted only if it meets the guidelines;
   a complete conforming set (CRAM and VCF) stands as harmonised output, else NGC harmonises.
4. national: the national pipeline's output may come without FASTQ; if it does not conform,
   FASTQ is needed to harmonise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from shared.events import HarmonisationDecision, HarmonisationPolicy

Category = Literal["raw", "alignment", "variants", "index", "other"]


@dataclass(frozen=True)
class Candidate:
    """One file as the policy sees it."""

    name: str
    category: Category
    sound: bool
    """No error-level problem."""
    conforms: bool | None = None
    """Clinical output only: meets the national guideline set."""


@dataclass
class PolicyOutcome:
    decision: HarmonisationDecision
    accepted: dict[str, bool]
    needed: set[str]
    """Files whose errors reject the submission."""
    unsatisfied: list[str] = field(default_factory=list)
    """Why the policy cannot be satisfied: each rejects the submission."""
    not_taken: set[str] = field(default_factory=set)
    """Clinical files the policy does not take (reported as a warning, not an error)."""

    @property
    def rejected(self) -> bool:
        return bool(self.unsatisfied)


def decide(policy: HarmonisationPolicy, files: list[Candidate]) -> PolicyOutcome:
    raw = [f for f in files if f.category == "raw"]
    clinical = [f for f in files if f.category in ("alignment", "variants")]
    indexes = [f for f in files if f.category == "index"]
    complete = (
        any(f.category == "alignment" for f in clinical)
        and any(f.category == "variants" for f in clinical)
        and all(f.conforms for f in clinical)
    )
    reasons: list[str] = []
    unsatisfied: list[str] = []
    accepted = {f.name: f.sound for f in files}
    needed: set[str] = set()
    not_taken: set[str] = set()
    needs = True
    inputs: list[str] = names(raw)
    passthrough: list[str] = []

    if policy is HarmonisationPolicy.HARMONISE_AND_STORE:
        needed = {f.name for f in files}
        if not raw:
            unsatisfied.append("harmonise-and-store needs raw reads (FASTQ or uBAM) to harmonise from")
        if not clinical:
            reasons.append("no clinical output reported; harmonising from the raw reads alone")
        else:
            reasons.append("clinical output kept as reported; NGC harmonises from the raw reads")
    elif policy is HarmonisationPolicy.INTERNATIONAL:
        needed = set(names(raw))
        for f in clinical + indexes:
            accepted[f.name] = False
            not_taken.add(f.name)
        if clinical:
            reasons.append("international: clinical output stays in the region and is not taken")
        if not raw:
            unsatisfied.append("international harmonisation needs FASTQ, and none was reported")
    elif policy is HarmonisationPolicy.PARTIAL:
        needed = set(names(raw))
        if not raw:
            unsatisfied.append("partial harmonisation needs FASTQ, and none was reported")
        _take_conforming(clinical, indexes, accepted, not_taken, reasons)
        if complete:
            needs, inputs, passthrough = False, [], names(clinical)
            reasons.append("clinical CRAM and VCF meet the national guidelines: kept as harmonised output")
        elif raw:
            reasons.append("no complete conforming clinical output: NGC harmonises from the FASTQ")
    else:  # NATIONAL
        if complete:
            needs, inputs, passthrough = False, [], names(clinical)
            needed = set(names(clinical)) | set(names(raw))
            reasons.append("national pipeline output meets the guidelines: kept as harmonised output")
        elif raw:
            needed = set(names(raw))
            _take_conforming(clinical, indexes, accepted, not_taken, reasons)
            reasons.append("clinical output does not meet the guidelines: NGC harmonises from the FASTQ")
        else:
            needed = set(names(clinical))
            unsatisfied.append(
                "national harmonisation without FASTQ needs conforming CRAM and VCF; "
                + ("they do not conform" if clinical else "none were reported")
            )

    unsound = sorted(f.name for f in files if f.name in needed and not f.sound)
    if unsound:
        unsatisfied.append(f"files with errors: {', '.join(unsound)}")
    if unsatisfied:
        accepted = dict.fromkeys(accepted, False)
        needs, inputs, passthrough = False, [], []
    decision = HarmonisationDecision(
        policy=policy,
        needs_harmonisation=needs,
        pipeline_inputs=inputs,
        passthrough=passthrough,
        reasons=reasons + unsatisfied,
    )
    return PolicyOutcome(decision, accepted, needed, unsatisfied, not_taken)


def names(files: list[Candidate]) -> list[str]:
    return [f.name for f in files]


def _take_conforming(
    clinical: list[Candidate],
    indexes: list[Candidate],
    accepted: dict[str, bool],
    not_taken: set[str],
    reasons: list[str],
) -> None:
    """Clinical files are taken only if they meet the guidelines (indexes travel with them)."""
    for f in clinical:
        if not f.conforms:
            accepted[f.name] = False
            not_taken.add(f.name)
            reasons.append(f"{f.name}: does not meet the national guidelines, not taken")
    if not any(f.conforms for f in clinical):
        for f in indexes:
            accepted[f.name] = False
            not_taken.add(f.name)
