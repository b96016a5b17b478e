"""End-to-end tests run the whole stack as real processes, each on a broker of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import Settings, get_settings
from tools.jaeger.server import LocalJaeger


@pytest.fixture(scope="session")
def jaeger_binary() -> Path:
    """Jaeger, built from the Go module proxy on first use (minutes on a cold Go cache)."""
    cache = get_settings().cache
    jaeger = LocalJaeger(cache / "unused-home", cache)
    if not jaeger.built():
        jaeger.build()
    return jaeger.binary


def stack_settings(tmp_path: Path) -> Settings:
    """A fresh state folder and its own broker, whatever the test session's environment says."""
    return Settings(home=tmp_path / "home", cache=get_settings().cache, kafka_bootstrap=None)
