"""The archive key in Kubernetes: a Secret the operator creates, its two key files mounted read
only into the pods that touch archived bytes, the passphrase through their environment, and
no key material anywhere in the repository's manifests."""

from __future__ import annotations

import posixpath
import subprocess
from pathlib import Path

from shared.config import SERVICE_SETTINGS
from tests.unit.k8s.k8s_objects import (
    K8S,
    ROOT,
    Obj,
    of_kind,
    one,
    only_container,
    rendered_texts,
    secret_volumes,
)

ARCHIVED = {name for name, section in SERVICE_SETTINGS.items() if "archive" in section.model_fields}
KEY_SECRET = "genomhub-archive-key"


def test_the_pods_that_touch_archived_bytes_mount_the_key_and_no_other_does(
    overlay: tuple[str, list[Obj]],
) -> None:
    _, objects = overlay
    settings = one(objects, "ConfigMap", "genomhub-config")["data"]
    secret_file, public_file = (
        settings["GENOMHUB_ARCHIVE_SECRET_KEY"],
        settings["GENOMHUB_ARCHIVE_PUBLIC_KEY"],
    )
    assert settings["GENOMHUB_HEADER_STORE"].startswith("s3://")  # never the pod's ephemeral /tmp
    for name in SERVICE_SETTINGS:
        workload = one(objects, "Deployment", name)
        container = only_container(workload)
        passphrase = [e for e in container.get("env", []) if e["name"] == "GENOMHUB_ARCHIVE_KEY_PASSPHRASE"]
        volumes = secret_volumes(workload, KEY_SECRET)
        if name not in ARCHIVED:
            assert not volumes and not passphrase, f"{name} touches no archived bytes and gets no key"
            continue
        assert passphrase == [
            {
                "name": "GENOMHUB_ARCHIVE_KEY_PASSPHRASE",
                "valueFrom": {"secretKeyRef": {"name": KEY_SECRET, "key": "passphrase"}},
            }
        ], name
        (volume,) = volumes
        items = {i["key"]: i["path"] for i in volume["secret"]["items"]}
        assert items == {"archive.sec": "archive.sec", "archive.pub": "archive.pub"}  # not the passphrase
        assert volume["secret"]["defaultMode"] & 0o007 == 0  # no one outside the pod's group
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
        assert mount["readOnly"] is True
        assert posixpath.join(mount["mountPath"], items["archive.sec"]) == secret_file
        assert posixpath.join(mount["mountPath"], items["archive.pub"]) == public_file


def test_no_key_material_is_in_the_manifests(overlay: tuple[str, list[Obj]]) -> None:
    """The key's Secret is the operator's, never rendered from the repository."""
    _, objects = overlay
    assert KEY_SECRET not in {s["metadata"]["name"] for s in of_kind(objects, "Secret")}
    for text in rendered_texts(objects):
        assert "CRYPT4GH" not in text and "GENOMHUB_ARCHIVE_KEY_PASSPHRASE=" not in text


def test_no_key_file_is_tracked_by_git() -> None:
    tracked = (
        subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    keyish = [path for path in tracked if path.endswith((".sec", ".pub", ".c4gh"))]
    assert keyish == []
    for path in tracked:
        if path.startswith("k8s/") and Path(ROOT, path).is_file():
            assert "BEGIN CRYPT4GH" not in Path(ROOT, path).read_text(errors="replace"), path


def test_the_readme_says_how_to_create_the_key_secret() -> None:
    readme = (K8S / "README.md").read_text()
    assert f"create secret generic {KEY_SECRET}" in readme
    for item in ("--from-file=archive.sec", "--from-file=archive.pub", "passphrase"):
        assert item in readme
