"""The month close: from a month's genome equivalents and the grant balance to a statement.

Pure arithmetic on integers (øre, micro genome equivalents), so that every krone of a
statement can be recomputed by hand from its lines:

- rate = min(standard rate, floor(balance / month's total GE)), whole DKK;
- each region's refund = rate x its GE, in øre, rounded half-up;
- total = the sum of the region refunds; the balance falls by the total.

Rounding each region half-up can, when the balance is within a few øre of rate x GE, add up
to more than the balance (three regions of 0.335, 0.335 and 0.33 GE at 1 DKK against a
balance of 1.00 DKK round to 0.34 + 0.34 + 0.33 = 1.01). The grant cannot pay what it does
not have, so in that case the rate steps down one krone at a time until the rounded total
fits; the statement says so (``rate_stepped_down``). The property tests prove the total
never exceeds the balance.

Lines (region x department x analysis type x month of receipt) share their region's refund
by largest remainder, so the lines of a region add up to its refund exactly.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from services.billing.money import ORE_PER_KRONE
from shared.envelope import derive_id
from shared.events import (
    MICRO_GE,
    AnalysisType,
    RefundCalculated,
    Region,
    RegionRefund,
    ge_to_micro,
    micro_to_ge,
)
from shared.identifiers import minted_free_of_cpr

SERVICE = "billing"
STATEMENT_NAMESPACE = uuid.UUID("0b6f7a8e-2f61-4f43-9d1e-4b8f0c6a5e27")


def statement_id_of(month: str) -> str:
    """A month has one statement ever, so its id is derived from the month alone."""
    name = f"statement|{month}"
    return minted_free_of_cpr(lambda n: str(uuid.uuid5(STATEMENT_NAMESPACE, f"{name}|{n}" if n else name)))


def event_id_of(statement_id: str) -> str:
    """The refund-calculated event of a statement always has the same id: a re-close or a
    re-emission after a failed publish is recognisable downstream as the same event."""
    return derive_id(statement_id, SERVICE, RefundCalculated.ce_type())


def rate_for(balance_ore: int, total_micro: int, standard_rate_dkk: int) -> int:
    """min(standard rate, floor(balance / total GE)) in whole DKK; the standard rate if no GE."""
    if balance_ore < 0 or total_micro < 0 or standard_rate_dkk < 0:
        raise ValueError("balance, genome equivalents and standard rate cannot be negative")
    if total_micro == 0:
        return standard_rate_dkk
    # balance_dkk / ge = (balance_ore / 100) / (micro / 1e6) = balance_ore * 1e4 / micro
    return min(standard_rate_dkk, balance_ore * (MICRO_GE // ORE_PER_KRONE) // total_micro)


def refund_ore(rate_dkk: int, ge_micro: int) -> int:
    """rate x GE in øre, rounded half-up (exact integer arithmetic)."""
    exact_times_micro = rate_dkk * ORE_PER_KRONE * ge_micro  # øre x 1e6
    return (2 * exact_times_micro + MICRO_GE) // (2 * MICRO_GE)


@dataclass(frozen=True)
class Settlement:
    rate_dkk: int
    amounts_ore: dict[Region, int]
    stepped_down: bool

    @property
    def total_ore(self) -> int:
        return sum(self.amounts_ore.values())


def settle(balance_ore: int, region_micro: Mapping[Region, int], standard_rate_dkk: int) -> Settlement:
    """The rate and each region's refund for a month; the total never exceeds the balance."""
    total_micro = sum(region_micro.values())
    rate = rate_for(balance_ore, total_micro, standard_rate_dkk)
    stepped = False
    while True:
        amounts = {region: refund_ore(rate, micro) for region, micro in region_micro.items()}
        if sum(amounts.values()) <= balance_ore or rate == 0:
            return Settlement(rate, amounts, stepped)
        rate -= 1
        stepped = True


def allocate(amount_ore: int, weights: Sequence[int]) -> list[int]:
    """Split ``amount_ore`` in proportion to ``weights`` by largest remainder (ties: first)."""
    total = sum(weights)
    if total == 0:
        return [0 for _ in weights]
    quotas = [divmod(amount_ore * w, total) for w in weights]
    shares = [q for q, _ in quotas]
    left = amount_ore - sum(shares)
    order = sorted(range(len(weights)), key=lambda i: (-quotas[i][1], i))
    for i in order[:left]:
        shares[i] += 1
    return shares


@dataclass(frozen=True, order=True)
class LineKey:
    region: Region
    department: str
    analysis_type: AnalysisType
    received_month: str


@dataclass(frozen=True)
class MonthLine:
    """Accrued genome equivalents of one region, department, analysis type and month of receipt."""

    key: LineKey
    samples: int
    ge_micro: int


@dataclass(frozen=True)
class StatementLine:
    key: LineKey
    samples: int
    ge_micro: int
    amount_ore: int
    adjustment: bool


@dataclass(frozen=True)
class RegionLine:
    region: Region
    samples: int
    ge_micro: int
    amount_ore: int


@dataclass(frozen=True)
class Statement:
    """A closed month. Immutable: stored once, and every later read returns it unchanged."""

    month: str
    statement_id: str
    event_id: str
    standard_rate_dkk: int
    rate_dkk: int
    rate_stepped_down: bool
    total_ge_micro: int
    total_ore: int
    balance_before_ore: int
    balance_after_ore: int
    regions: tuple[RegionLine, ...]
    lines: tuple[StatementLine, ...]
    closed_at: datetime
    closed_by: str
    forced: bool
    samples: int = field(default=0)

    def event(self) -> RefundCalculated:
        return RefundCalculated(
            month=self.month,
            statement_id=self.statement_id,
            rate_dkk=self.rate_dkk,
            total_genome_equivalents=micro_to_ge(self.total_ge_micro),
            total_ore=self.total_ore,
            balance_before_ore=self.balance_before_ore,
            balance_after_ore=self.balance_after_ore,
            regions=[
                RegionRefund(
                    region=r.region, genome_equivalents=micro_to_ge(r.ge_micro), amount_ore=r.amount_ore
                )
                for r in self.regions
            ],
            closed_at=self.closed_at,
        )

    def document(self) -> dict[str, Any]:
        """The statement as plain JSON-able data: amounts in øre (integers), GE as strings."""
        return {
            "month": self.month,
            "statement_id": self.statement_id,
            "event_id": self.event_id,
            "currency": "DKK",
            "standard_rate_dkk": self.standard_rate_dkk,
            "rate_dkk": self.rate_dkk,
            "rate_stepped_down": self.rate_stepped_down,
            "samples": self.samples,
            "total_genome_equivalents": str(micro_to_ge(self.total_ge_micro)),
            "total_ore": self.total_ore,
            "balance_before_ore": self.balance_before_ore,
            "balance_after_ore": self.balance_after_ore,
            "closed_at": self.closed_at.isoformat(),
            "closed_by": self.closed_by,
            "forced": self.forced,
            "regions": [
                {
                    "region": r.region.value,
                    "samples": r.samples,
                    "genome_equivalents": str(micro_to_ge(r.ge_micro)),
                    "amount_ore": r.amount_ore,
                }
                for r in self.regions
            ],
            "lines": [
                {
                    "region": ln.key.region.value,
                    "department": ln.key.department,
                    "analysis_type": ln.key.analysis_type.value,
                    "received_month": ln.key.received_month,
                    "adjustment": ln.adjustment,
                    "samples": ln.samples,
                    "genome_equivalents": str(micro_to_ge(ln.ge_micro)),
                    "amount_ore": ln.amount_ore,
                }
                for ln in self.lines
            ],
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Statement:
        return cls(
            month=doc["month"],
            statement_id=doc["statement_id"],
            event_id=doc["event_id"],
            standard_rate_dkk=int(doc["standard_rate_dkk"]),
            rate_dkk=int(doc["rate_dkk"]),
            rate_stepped_down=bool(doc["rate_stepped_down"]),
            samples=int(doc["samples"]),
            total_ge_micro=ge_to_micro(Decimal(doc["total_genome_equivalents"])),
            total_ore=int(doc["total_ore"]),
            balance_before_ore=int(doc["balance_before_ore"]),
            balance_after_ore=int(doc["balance_after_ore"]),
            closed_at=datetime.fromisoformat(doc["closed_at"]),
            closed_by=doc["closed_by"],
            forced=bool(doc["forced"]),
            regions=tuple(
                RegionLine(
                    region=Region(r["region"]),
                    samples=int(r["samples"]),
                    ge_micro=ge_to_micro(Decimal(r["genome_equivalents"])),
                    amount_ore=int(r["amount_ore"]),
                )
                for r in doc["regions"]
            ),
            lines=tuple(
                StatementLine(
                    key=LineKey(
                        Region(ln["region"]),
                        ln["department"],
                        AnalysisType(ln["analysis_type"]),
                        ln["received_month"],
                    ),
                    samples=int(ln["samples"]),
                    ge_micro=ge_to_micro(Decimal(ln["genome_equivalents"])),
                    amount_ore=int(ln["amount_ore"]),
                    adjustment=bool(ln["adjustment"]),
                )
                for ln in doc["lines"]
            ),
        )


def close_month(
    month: str,
    lines: Iterable[MonthLine],
    balance_before_ore: int,
    standard_rate_dkk: int,
    *,
    closed_at: datetime,
    closed_by: str,
    forced: bool = False,
) -> Statement:
    """The statement of ``month`` from its accrued lines and the grant balance before it."""
    if balance_before_ore < 0:
        raise ValueError(f"the grant balance cannot be negative ({balance_before_ore} øre)")
    by_key: dict[LineKey, MonthLine] = {}
    for line in lines:
        if line.key in by_key:
            raise ValueError(f"line {line.key} given twice")
        if line.ge_micro < 0 or line.samples < 0:
            raise ValueError(f"line {line.key} has negative genome equivalents or samples")
        by_key[line.key] = line
    ordered = [by_key[k] for k in sorted(by_key)]
    region_micro: dict[Region, int] = {}
    region_samples: dict[Region, int] = {}
    for line in ordered:
        region_micro[line.key.region] = region_micro.get(line.key.region, 0) + line.ge_micro
        region_samples[line.key.region] = region_samples.get(line.key.region, 0) + line.samples
    settlement = settle(balance_before_ore, region_micro, standard_rate_dkk)

    statement_lines: list[StatementLine] = []
    for region in sorted(region_micro):
        members = [ln for ln in ordered if ln.key.region == region]
        shares = allocate(settlement.amounts_ore[region], [ln.ge_micro for ln in members])
        statement_lines.extend(
            StatementLine(ln.key, ln.samples, ln.ge_micro, share, ln.key.received_month != month)
            for ln, share in zip(members, shares, strict=True)
        )
    regions = tuple(
        RegionLine(region, region_samples[region], region_micro[region], settlement.amounts_ore[region])
        for region in sorted(region_micro)
    )
    statement_id = statement_id_of(month)
    return Statement(
        month=month,
        statement_id=statement_id,
        event_id=event_id_of(statement_id),
        standard_rate_dkk=standard_rate_dkk,
        rate_dkk=settlement.rate_dkk,
        rate_stepped_down=settlement.stepped_down,
        total_ge_micro=sum(region_micro.values()),
        total_ore=settlement.total_ore,
        balance_before_ore=balance_before_ore,
        balance_after_ore=balance_before_ore - settlement.total_ore,
        regions=regions,
        lines=tuple(statement_lines),
        closed_at=closed_at,
        closed_by=closed_by,
        forced=forced,
        samples=sum(region_samples.values()),
    )


@dataclass(frozen=True)
class Forecast:
    rate_dkk: int
    total_ore: int
    balance_after_ore: int


def forecast(ge_micro: int, balance_ore: int, standard_rate_dkk: int) -> Forecast:
    """What a month of ``ge_micro`` GE would get, all in one region (the same rule as a close;
    a real close rounds per region, which can differ from this by at most a few øre)."""
    settlement = settle(balance_ore, {Region.HOVEDSTADEN: ge_micro}, standard_rate_dkk)
    return Forecast(settlement.rate_dkk, settlement.total_ore, balance_ore - settlement.total_ore)
