"""A small kustomize renderer: exactly the kustomization features ``k8s/`` uses, no more.

The tests render both overlays with it so that they need no kubectl (Debian's
``kubernetes-client`` is too old for today's kustomize). Every kustomization field it does
not implement is an error, never silently skipped, so the tree cannot start using a feature
whose effect the tests would then not see. Where kubectl is installed, a test checks that
this renderer and ``kubectl kustomize`` give the same objects.

Supported: ``resources`` (files and kustomization folders), ``namespace``, ``labels``
(without selectors), ``images``, ``patches`` (strategic merge, or JSON 6902 with a ``target``), and
``configMapGenerator``/``secretGenerator`` (``literals`` and ``envs``, behaviours
create/merge/replace, only with ``disableNameSuffixHash``).

    .venv/bin/python -m tools.k8s.kustomize k8s/overlays/dev
"""

from __future__ import annotations

import argparse
import base64
import copy
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_FIELDS = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "labels",
    "patches",
    "configMapGenerator",
    "secretGenerator",
    "images",
}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
}
# Kinds whose pod template kustomize's `labels: includeTemplates` reaches.
TEMPLATED_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "ReplicationController"}
# Strategic-merge keys of the lists the patches touch, by (list field, parent field);
# a list of any other field is replaced whole, as kustomize does.
MERGE_KEYS: dict[tuple[str, str | None], str] = {
    ("containers", None): "name",
    ("initContainers", None): "name",
    ("env", None): "name",
    ("volumes", None): "name",
    ("volumeMounts", None): "mountPath",
    ("imagePullSecrets", None): "name",
    ("ports", "containers"): "containerPort",
    ("ports", "initContainers"): "containerPort",
    ("ports", "spec"): "port",
}
# API groups whose objects kustomize merges strategically; others (custom resources) get
# JSON merge patch semantics, where lists are replaced.
BUILTIN_GROUPS = {
    "",
    "apps",
    "batch",
    "networking.k8s.io",
    "policy",
    "autoscaling",
    "rbac.authorization.k8s.io",
}


class KustomizeError(Exception):
    """The tree uses something this renderer does not support, or is inconsistent."""


def resource_id(obj: Obj) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return (str(obj.get("kind")), str(meta.get("namespace") or ""), str(meta.get("name")))


def load_documents(path: Path) -> list[Obj]:
    with path.open() as stream:
        docs = [d for d in yaml.safe_load_all(stream) if d is not None]
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc or "metadata" not in doc:
            raise KustomizeError(f"{path}: every document must be an object with kind and metadata")
    return docs


def kustomization_file(folder: Path) -> Path:
    for name in KUSTOMIZATION_FILES:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    raise KustomizeError(f"{folder}: no kustomization file")


def render(folder: Path | str) -> list[Obj]:
    """The objects the kustomization in ``folder`` builds, in resource order."""
    root = Path(folder).resolve()
    spec = yaml.safe_load(kustomization_file(root).read_text()) or {}
    unknown = set(spec) - SUPPORTED_FIELDS
    if unknown:
        raise KustomizeError(f"{root}: unsupported kustomization fields {sorted(unknown)}")

    objects: list[Obj] = []
    for entry in spec.get("resources", []):
        path = (root / entry).resolve()
        objects.extend(render(path) if path.is_dir() else load_documents(path))

    for generator, kind in (("configMapGenerator", "ConfigMap"), ("secretGenerator", "Secret")):
        for item in spec.get(generator, []):
            generate(objects, item, kind, root)

    for entry in spec.get("patches", []):
        apply_patch_entry(objects, entry, root)

    if "namespace" in spec:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = spec["namespace"]

    for entry in spec.get("labels", []):
        add_labels(objects, entry)

    for entry in spec.get("images", []):
        set_image(objects, entry)

    seen: set[tuple[str, str, str]] = set()
    for obj in objects:
        rid = resource_id(obj)
        if rid in seen:
            raise KustomizeError(f"{root}: duplicate resource {rid}")
        seen.add(rid)
    return objects


def generator_data(item: Obj, root: Path) -> dict[str, str]:
    unsupported = set(item) - {"name", "behavior", "options", "literals", "envs"}
    if unsupported:
        raise KustomizeError(f"generator {item.get('name')}: unsupported fields {sorted(unsupported)}")
    data: dict[str, str] = {}
    for literal in item.get("literals", []):
        key, sep, value = str(literal).partition("=")
        if not sep:
            raise KustomizeError(f"literal {literal!r} has no '='")
        data[key] = value
    for env_file in item.get("envs", []):
        data.update(parse_env_file(root / env_file))
    return data


def parse_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines; blank lines and ``#`` comments skipped, values taken verbatim."""
    if not path.is_file():
        raise FileNotFoundError(f"env file {path} is missing")
    data: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise KustomizeError(f"{path}:{number}: not a KEY=VALUE line")
        data[key.strip()] = value
    return data


def generate(objects: list[Obj], item: Obj, kind: str, root: Path) -> None:
    name = item["name"]
    behavior = item.get("behavior", "create")
    data = generator_data(item, root)
    encoded = (
        {k: base64.b64encode(v.encode()).decode() for k, v in data.items()} if kind == "Secret" else data
    )
    existing = [o for o in objects if o["kind"] == kind and o["metadata"].get("name") == name]
    if behavior == "create":
        if existing:
            raise KustomizeError(f"{kind} {name} already exists; use behavior merge or replace")
        if not (item.get("options") or {}).get("disableNameSuffixHash"):
            raise KustomizeError(f"{kind} {name}: only generators with disableNameSuffixHash are supported")
        obj: Obj = {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}, "data": encoded}
        if kind == "Secret":
            obj["type"] = "Opaque"
        objects.append(obj)
    elif behavior in ("merge", "replace"):
        if len(existing) != 1:
            raise KustomizeError(f"{kind} {name}: behavior {behavior} needs exactly one existing object")
        target = existing[0]
        target["data"] = {**target.get("data", {}), **encoded} if behavior == "merge" else encoded
    else:
        raise KustomizeError(f"{kind} {name}: unknown behavior {behavior!r}")


def apply_patch_entry(objects: list[Obj], entry: Obj, root: Path) -> None:
    unsupported = set(entry) - {"path", "patch", "target"}
    if unsupported:
        raise KustomizeError(f"patch: unsupported fields {sorted(unsupported)}")
    text = (root / entry["path"]).read_text() if "path" in entry else entry["patch"]
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    target = entry.get("target")
    if target is not None:
        matches = [o for o in objects if matches_target(o, target)]
        if not matches:
            raise KustomizeError(f"patch target {target} matches nothing")
        if len(docs) == 1 and isinstance(docs[0], list):
            for obj in matches:
                apply_json6902(obj, docs[0])
        else:
            for obj in matches:
                for doc in docs:
                    strategic_merge(obj, doc)
        return
    for doc in docs:
        kind, name = doc.get("kind"), (doc.get("metadata") or {}).get("name")
        matches = [o for o in objects if o["kind"] == kind and o["metadata"].get("name") == name]
        if len(matches) != 1:
            raise KustomizeError(f"patch for {kind} {name} matches {len(matches)} objects")
        strategic_merge(matches[0], doc)


def matches_target(obj: Obj, target: Obj) -> bool:
    unsupported = set(target) - {"kind", "name", "group", "version"}
    if unsupported:
        raise KustomizeError(f"patch target: unsupported fields {sorted(unsupported)}")
    group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
    return bool(
        target.get("kind", obj["kind"]) == obj["kind"]
        and target.get("name", obj["metadata"].get("name")) == obj["metadata"].get("name")
        and target.get("group", group) == group
        and target.get("version", version) == version
    )


def strategic_merge(obj: Obj, patch: Obj) -> None:
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    merged = merge_value(obj, patch, parent=None, strategic=group in BUILTIN_GROUPS)
    obj.clear()
    obj.update(merged)


def merge_value(
    target: Any, patch: Any, parent: str | None, strategic: bool, field: str | None = None
) -> Any:
    if isinstance(patch, dict) and isinstance(target, dict):
        if "$patch" in patch:
            raise KustomizeError("$patch directives are not supported")
        result = dict(target)
        for key, value in patch.items():
            if value is None:
                result.pop(key, None)
            elif key in result:
                result[key] = merge_value(result[key], value, parent=field, strategic=strategic, field=key)
            else:
                result[key] = copy.deepcopy(value)
        return result
    if isinstance(patch, list) and isinstance(target, list) and strategic and field is not None:
        key = MERGE_KEYS.get((field, parent)) or MERGE_KEYS.get((field, None))
        if key is not None:
            return merge_list(target, patch, key, field, strategic)
    return copy.deepcopy(patch)


def merge_list(target: list[Any], patch: list[Any], key: str, field: str, strategic: bool) -> list[Any]:
    """The patch's items first (merged into their namesakes), then the untouched others:
    the order kustomize gives."""
    merged: list[Any] = []
    used: set[int] = set()
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise KustomizeError(f"list {field}: every patch item needs its merge key {key!r}")
        for index, existing in enumerate(target):
            if isinstance(existing, dict) and existing.get(key) == item[key]:
                merged.append(merge_value(existing, item, parent=None, strategic=strategic, field=field))
                used.add(index)
                break
        else:
            merged.append(copy.deepcopy(item))
    return merged + [copy.deepcopy(item) for index, item in enumerate(target) if index not in used]


def pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"JSON pointer {path!r} must start with '/'")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def apply_json6902(obj: Obj, operations: Iterable[Obj]) -> None:
    for op in operations:
        *parents, last = pointer(op["path"])
        node: Any = obj
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        kind = op["op"]
        if kind in ("add", "replace"):
            value = copy.deepcopy(op["value"])
            if isinstance(node, list):
                index = len(node) if last == "-" else int(last)
                if kind == "add":
                    node.insert(index, value)
                else:
                    node[index] = value
            else:
                if kind == "replace" and last not in node:
                    raise KustomizeError(f"replace of missing {op['path']}")
                node[last] = value
        elif kind == "remove":
            if isinstance(node, list):
                del node[int(last)]
            else:
                del node[last]
        else:
            raise KustomizeError(f"JSON 6902 op {kind!r} is not supported")


def add_labels(objects: list[Obj], entry: Obj) -> None:
    unsupported = set(entry) - {"pairs", "includeSelectors", "includeTemplates"}
    if unsupported or entry.get("includeSelectors"):
        raise KustomizeError("labels: only pairs with includeTemplates are supported (no selectors)")
    pairs = {str(k): str(v) for k, v in (entry.get("pairs") or {}).items()}
    for obj in objects:
        obj["metadata"].setdefault("labels", {}).update(pairs)
        if entry.get("includeTemplates") and obj["kind"] in TEMPLATED_KINDS:
            template = obj.setdefault("spec", {}).setdefault("template", {})
            template.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
            for claim in obj["spec"].get("volumeClaimTemplates", []):
                claim.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)


def set_image(objects: list[Obj], entry: Obj) -> None:
    """``images``: a registry, tag or digest for every container running image ``name``."""
    unsupported = set(entry) - {"name", "newName", "newTag", "digest"}
    if unsupported:
        raise KustomizeError(f"images: unsupported fields {sorted(unsupported)}")
    for obj in objects:
        if obj["kind"] not in TEMPLATED_KINDS:
            continue
        spec = obj["spec"]["template"].get("spec", {})
        for container in [*spec.get("containers", []), *spec.get("initContainers", [])]:
            image = str(container.get("image", ""))
            name, tag = image.split("@")[0], ""
            if ":" in name.rsplit("/", 1)[-1]:
                name, tag = name.rsplit(":", 1)
            if name != entry["name"]:
                continue
            reference = entry.get("newName", name)
            if "digest" in entry:
                container["image"] = f"{reference}@{entry['digest']}"
            else:
                new_tag = entry.get("newTag", tag)
                container["image"] = f"{reference}:{new_tag}" if new_tag else reference


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.k8s.kustomize", description=__doc__)
    parser.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    sys.stdout.write(yaml.safe_dump_all(render(args.folder), sort_keys=False))


if __name__ == "__main__":
    main()
