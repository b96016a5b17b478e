"""End-to-end tests run the whole stack as real processes, each on a broker of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import StateSettings
from tools.jaeger.server import LocalJaeger
from tools.stack.environment import StackSettings


@pytest.fixture(scope="session")
def jaeger_binary() -> Path:
    """Jaeger, built from the Go module proxy on first use (minutes on a cold Go cache)."""
    cache = StateSettings().cache
    jaeger = LocalJaeger(cache / "unused-home", cache)
    if not jaeger.built():
        jaeger.build()
    return jaeger.binary


def stack_settings(tmp_path: Path) -> StackSettings:
    """A fresh state folder and its own broker, whatever the test session's environment says."""
    return StackSettings.fresh(tmp_path / "home", StateSettings().cache)
