"""Fixtures for the operators' tools.

The broker is shared by the whole test session, so these tests leave the groups they touch
parked at the end of their topics: a service started by a later test then consumes only
what that test publishes, not the records (some deliberately malformed) written here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pytest

from tests.integration.operations.kafka_groups import Offsets, bounds, commit


@pytest.fixture
def park(kafka_bootstrap: str) -> Iterator[Callable[[str, Sequence[str]], Offsets]]:
    """``park(group, topics)`` commits the group at the end of its topics now and again
    when the test ends."""
    parked: list[tuple[str, Sequence[str]]] = []

    def at_end(group: str, topics: Sequence[str]) -> Offsets:
        ends = bounds(kafka_bootstrap, topics)[1]
        commit(kafka_bootstrap, group, ends)
        parked.append((group, topics))
        return ends

    yield at_end
    for group, topics in parked:
        commit(kafka_bootstrap, group, bounds(kafka_bootstrap, topics)[1])
