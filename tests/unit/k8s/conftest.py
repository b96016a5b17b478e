"""Both overlays of ``k8s/``, rendered once per session by `kubectl kustomize`."""

from __future__ import annotations

import pytest

from tests.unit.k8s.k8s_objects import K8S, Obj, prod_tree, render


@pytest.fixture(scope="session")
def dev() -> list[Obj]:
    return render(K8S / "overlays" / "dev")


@pytest.fixture(scope="session")
def prod(tmp_path_factory: pytest.TempPathFactory) -> list[Obj]:
    return render(prod_tree(tmp_path_factory.mktemp("prod")) / "overlays" / "prod")


@pytest.fixture(scope="session", params=["dev", "prod"])
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[Obj]]:
    """Each overlay with its name, for the checks both must pass."""
    return request.param, request.getfixturevalue(request.param)
