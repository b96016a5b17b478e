"""The spokes' tests share one way to stand up a hub and a spoke: :func:`feeds.linked`, once
per module, so each module starts from empty feeds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.events import Region
from tests.integration.spoke.feeds import Link, linked


@pytest.fixture(scope="module")
def link(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Link]:
    """The module's ``SPOKE`` region's spoke, MirrorMaker 2 carrying its feed alone."""
    region: Region = request.module.SPOKE
    with linked(tmp_path_factory.mktemp(f"spoke-{region.value}"), region) as made:
        yield made
