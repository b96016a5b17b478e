"""Month closes stay within the service's life, on real SQLite and PostgreSQL databases."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.billing.store import BillingStore, CloseRefused


@pytest.mark.parametrize(("month", "force"), [("1900-01", False), ("2018-12", False), ("2099-01", True)])
def test_a_month_outside_the_service_s_life_cannot_be_closed(
    store: BillingStore, month: str, force: bool
) -> None:
    with pytest.raises(CloseRefused, match="outside the service's life"):
        store.close(
            month, standard_rate_dkk=300, now=datetime(2026, 2, 10, tzinfo=UTC), by="finance", force=force
        )
    assert store.statements() == []
