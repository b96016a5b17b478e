"""Every core object of both overlays against Kubernetes' own OpenAPI schemas.

The structure tests check what genomhub needs of the objects; these check that a cluster
would accept them at all (a misspelt field, a string where an integer belongs). Custom
resources (Strimzi's, cert-manager's) have no schema in ``kubernetes-validate``; their fields
are checked by the structure tests.
"""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest
from kubernetes_validate.utils import SchemaNotFoundError

from tests.unit.k8s.k8s_objects import Obj, one

# The oldest Kubernetes release still supported upstream, and the newest the schemas know.
KUBERNETES_RELEASES = ("1.35", "1.37")


def built_in(api_version: str) -> bool:
    """Kubernetes' own API groups: the core group (``v1``), unqualified ones (``apps``) and
    ``*.k8s.io``; any other dotted group belongs to a custom resource."""
    group = api_version.rpartition("/")[0]
    return "." not in group or group.endswith(".k8s.io")


def core(objects: list[Obj]) -> list[Obj]:
    return [o for o in objects if built_in(o["apiVersion"])]


@pytest.mark.parametrize("release", KUBERNETES_RELEASES)
def test_core_objects_match_the_kubernetes_schemas(overlay: tuple[str, list[Obj]], release: str) -> None:
    _name, objects = overlay
    assert core(objects), "the overlay renders no core objects"
    for obj in core(objects):
        try:
            kubernetes_validate.validate(obj, release, strict=True)
        except SchemaNotFoundError:
            pytest.fail(f"no Kubernetes {release} schema for {obj['apiVersion']} {obj['kind']}")


def test_a_misspelt_or_mistyped_field_is_refused(dev: list[Obj]) -> None:
    """The check above can fail: the receiver's Deployment with one field misspelt, and with
    one field of the wrong type."""
    misspelt = copy.deepcopy(one(dev, "Deployment", "receiver"))
    misspelt["spec"]["replica"] = misspelt["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelt, KUBERNETES_RELEASES[0], strict=True)
    mistyped = copy.deepcopy(one(dev, "Deployment", "receiver"))
    mistyped["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(mistyped, KUBERNETES_RELEASES[0], strict=True)
