"""Helpers of the k8s tests: the tree's paths, rendering, and object lookup."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "k8s"
SERVICES = ("receiver", "validator", "harmoniser", "indexer", "billing")
Obj = dict[str, Any]


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
