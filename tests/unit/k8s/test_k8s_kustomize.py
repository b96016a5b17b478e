"""The project's kustomize renderer: the semantics it implements, its refusals, and (where
kubectl is installed) agreement with ``kubectl kustomize`` on both overlays."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.k8s.k8s_objects import K8S, Obj, prod_tree
from tools.k8s.kustomize import KustomizeError, render, resource_id

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: web:1
          ports: [{containerPort: 80, name: http}]
          env: [{name: A, value: "1"}, {name: B, value: "2"}]
          volumeMounts: [{name: tmp, mountPath: /tmp}]
      volumes: [{name: tmp, emptyDir: {}}]
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: w}
spec: {items: [1, 2, 3], nested: {keep: true, change: 1}}
"""


def tree(tmp_path: Path, kustomization: str, **files: str) -> Path:
    (tmp_path / "kustomization.yaml").write_text(kustomization)
    for name, text in files.items():
        (tmp_path / name.replace("__", ".")).write_text(text)
    return tmp_path


def by_id(objects: list[Obj]) -> dict[tuple[str, str, str], Obj]:
    return {resource_id(o): o for o in objects}


def test_strategic_merge_keys_lists_and_deletes_with_null(tmp_path: Path) -> None:
    patch = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  template:
    spec:
      containers:
        - name: web
          env: [{name: B, value: "20"}, {name: C, value: "3"}]
          volumeMounts: [{name: data, mountPath: /data}]
          ports: null
      volumes: [{name: data, emptyDir: {}}]
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: w}
spec: {items: [9], nested: {change: 2}}
"""
    root = tree(
        tmp_path,
        "resources: [app.yaml]\npatches: [{path: patch.yaml}]\nnamespace: ns\n",
        app__yaml=DEPLOYMENT,
        patch__yaml=patch,
    )
    objects = by_id(render(root))
    web = objects[("Deployment", "ns", "web")]
    assert web["spec"]["replicas"] == 3
    (container,) = web["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "web:1"
    assert container["env"] == [
        {"name": "B", "value": "20"},
        {"name": "C", "value": "3"},
        {"name": "A", "value": "1"},
    ]
    assert [m["name"] for m in container["volumeMounts"]] == ["data", "tmp"]
    assert "ports" not in container
    # A custom resource merges maps but replaces lists (JSON merge patch), as kustomize does.
    assert objects[("Widget", "ns", "w")]["spec"] == {"items": [9], "nested": {"keep": True, "change": 2}}


def test_json6902_patch_with_a_target(tmp_path: Path) -> None:
    kustomization = """
resources: [app.yaml]
patches:
  - target: {kind: Deployment, name: web}
    patch: |-
      - {op: replace, path: /spec/replicas, value: 2}
      - {op: add, path: /spec/template/spec/containers/0/env/-, value: {name: Z, value: "26"}}
      - {op: remove, path: /spec/template/spec/containers/0/env/0}
"""
    root = tree(tmp_path, kustomization, app__yaml=DEPLOYMENT)
    web = by_id(render(root))[("Deployment", "", "web")]
    assert web["spec"]["replicas"] == 2
    assert [e["name"] for e in web["spec"]["template"]["spec"]["containers"][0]["env"]] == ["B", "Z"]


def test_images_set_registry_and_tag(tmp_path: Path) -> None:
    kustomization = "resources: [app.yaml]\nimages: [{name: web, newName: registry.local/web, newTag: '2'}]\n"
    root = tree(tmp_path, kustomization, app__yaml=DEPLOYMENT)
    web = by_id(render(root))[("Deployment", "", "web")]
    assert web["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.local/web:2"


def test_generators_create_and_merge_across_layers(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    tree(
        base,
        """
configMapGenerator:
  - name: cfg
    options: {disableNameSuffixHash: true}
    literals: [A=1, B=x=y]
""",
    )
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    tree(
        overlay,
        """
resources: [../base]
configMapGenerator:
  - {name: cfg, behavior: merge, literals: [A=2]}
secretGenerator:
  - name: s
    options: {disableNameSuffixHash: true}
    envs: [s.env]
""",
        s__env="# comment\n\nTOKEN=abc=\n",
    )
    objects = by_id(render(overlay))
    assert objects[("ConfigMap", "", "cfg")]["data"] == {"A": "2", "B": "x=y"}
    secret = objects[("Secret", "", "s")]
    assert secret["type"] == "Opaque"
    assert base64.b64decode(secret["data"]["TOKEN"]).decode() == "abc="


@pytest.mark.parametrize(
    "kustomization",
    [
        "resources: [app.yaml]\nnamePrefix: x-\n",
        "resources: [app.yaml]\nlabels: [{pairs: {a: b}, includeSelectors: true}]\n",
        "configMapGenerator: [{name: c, literals: [A=1]}]\n",
        "resources: [app.yaml]\npatches: [{path: app.yaml, options: {allowNameChange: true}}]\n",
        "resources: [app.yaml, app.yaml]\n",
    ],
)
def test_unsupported_or_inconsistent_trees_are_refused(tmp_path: Path, kustomization: str) -> None:
    root = tree(tmp_path, kustomization, app__yaml=DEPLOYMENT)
    with pytest.raises(KustomizeError):
        render(root)


def test_a_patch_that_matches_nothing_is_refused(tmp_path: Path) -> None:
    patch = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: missing}\nspec: {replicas: 2}\n"
    root = tree(
        tmp_path, "resources: [app.yaml]\npatches: [{path: p.yaml}]\n", app__yaml=DEPLOYMENT, p__yaml=patch
    )
    with pytest.raises(KustomizeError, match="missing"):
        render(root)


def normalised(objects: list[Any]) -> dict[tuple[str, str, str], Obj]:
    """Objects by id, Secret data decoded (kubectl wraps base64 lines, which is the same data)."""
    result = {}
    for obj in objects:
        if obj["kind"] == "Secret":
            obj = {**obj, "data": {k: base64.b64decode(v).decode() for k, v in obj.get("data", {}).items()}}
        result[resource_id(obj)] = obj
    return result


def kubectl_kustomize(folder: Path) -> list[Obj]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; the renderer's own tests above still run")
    done = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, check=False)
    if done.returncode != 0 and "unknown command" in done.stderr:
        pytest.skip("this kubectl has no kustomize")
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d is not None]


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_renderer_agrees_with_kubectl(tmp_path: Path, name: str) -> None:
    folder = prod_tree(tmp_path) / "overlays" / "prod" if name == "prod" else K8S / "overlays" / "dev"
    theirs = normalised(kubectl_kustomize(folder))
    ours = normalised(render(folder))
    assert set(ours) == set(theirs)
    for key, obj in ours.items():
        assert obj == theirs[key], key
