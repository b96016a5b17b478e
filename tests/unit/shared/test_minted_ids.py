"""Ids genomhub mints never read as a CPR number, so the guard on the bus never refuses them.

A fault test lost a sample's accrual to this: an event id derived as a UUID read as
``120385-1234`` and billing dead-lettered the event as a direct identifier.
"""

from __future__ import annotations

import itertools
import uuid

from hypothesis import given
from hypothesis import strategies as st

from services.billing.refund import STATEMENT_NAMESPACE, statement_id_of
from shared.bus import new_event_id
from shared.envelope import ID_NAMESPACE, derive_id
from shared.events import new_submission_id
from shared.identifiers import contains_cpr, minted_free_of_cpr


def first_cause_whose_plain_id_reads_as_a_cpr() -> str:
    for n in itertools.count():
        cause = f"cause-{n}"
        if contains_cpr(str(uuid.uuid5(ID_NAMESPACE, f"{cause}|billing|t"))):
            return cause
    raise AssertionError("unreachable")


def test_a_derived_id_that_would_read_as_a_cpr_is_derived_again_the_same_way_each_time() -> None:
    cause = first_cause_whose_plain_id_reads_as_a_cpr()
    derived = derive_id(cause, "billing", "t")
    assert not contains_cpr(derived)
    assert derived == derive_id(cause, "billing", "t")
    retried = (str(uuid.uuid5(ID_NAMESPACE, f"{cause}|billing|t|{n}")) for n in itertools.count(1))
    assert derived == next(i for i in retried if not contains_cpr(i))


@given(st.text(min_size=1, max_size=40), st.sampled_from(["receiver", "validator", "billing"]))
def test_derived_ids_pass_the_guard_and_keep_the_id_they_always_had(cause: str, service: str) -> None:
    plain = str(uuid.uuid5(ID_NAMESPACE, f"{cause}|{service}|dk.ngc.genomhub.indexed.v1"))
    derived = derive_id(cause, service, "dk.ngc.genomhub.indexed.v1")
    assert not contains_cpr(derived)
    if not contains_cpr(plain):
        assert derived == plain  # replays of events minted before this rule converge


def test_fresh_ids_pass_the_guard() -> None:
    for _ in range(3000):  # several times the one-in-a-few-hundred rate of CPR-like UUIDs
        assert not contains_cpr(new_event_id())
        assert not contains_cpr(new_submission_id())


def test_statement_ids_pass_the_guard_for_every_month_of_the_century() -> None:
    months = [f"{y}-{m:02d}" for y in range(2019, 2100) for m in range(1, 13)]
    for month in months:
        assert not contains_cpr(statement_id_of(month))
    clean = [m for m in months if not contains_cpr(str(uuid.uuid5(STATEMENT_NAMESPACE, f"statement|{m}")))]
    assert all(statement_id_of(m) == str(uuid.uuid5(STATEMENT_NAMESPACE, f"statement|{m}")) for m in clean)


def test_minting_draws_again_only_while_the_guard_refuses() -> None:
    drawn: list[int] = []

    def draw(n: int) -> str:
        drawn.append(n)
        return ["ab120385-1234-4abc", "ab120385-12x4", "clean"][n]

    assert contains_cpr("ab120385-1234-4abc") and not contains_cpr("ab120385-12x4")
    assert minted_free_of_cpr(draw) == "ab120385-12x4"
    assert drawn == [0, 1]
