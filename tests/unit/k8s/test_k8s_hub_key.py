"""The hub's signing key in Kubernetes: a Secret the operator creates, its two key files
mounted read only into the publisher's pods alone, the passphrase through their environment
alone, and no key material anywhere in the repository's manifests."""

from __future__ import annotations

import posixpath

import pytest

from shared.config import SERVICE_SETTINGS, HubKeySettings
from tests.unit.k8s.k8s_objects import K8S, Obj, of_kind, only_container, rendered_texts, secret_volumes
from tests.unit.k8s.test_k8s_manifests import WORKLOAD_KINDS, config, environment, secret, settings_of

SIGNERS = {name for name, section in SERVICE_SETTINGS.items() if "hub" in section.model_fields}
KEY_SECRET = "genomhub-hub-key"
PASSPHRASE = "GENOMHUB_HUB_KEY_PASSPHRASE"


def test_only_the_publisher_signs() -> None:
    assert {"publisher"} == SIGNERS


def test_the_publisher_mounts_the_key_and_no_other_pod_does(
    overlay: tuple[str, list[Obj]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, objects = overlay
    settings = config(objects)
    secret_file, public_file = settings["GENOMHUB_HUB_SECRET_KEY"], settings["GENOMHUB_HUB_PUBLIC_KEY"]
    # Every pod takes genomhub-secrets whole (envFrom): the passphrase must not be in it.
    assert PASSPHRASE not in secret(objects) and PASSPHRASE not in settings
    workloads = [o for o in objects if o["kind"] in WORKLOAD_KINDS]
    assert {w["metadata"]["name"] for w in workloads} >= set(SERVICE_SETTINGS)
    for workload in workloads:
        name = workload["metadata"]["name"]
        spec = workload["spec"]["template"]["spec"]
        containers = [*spec.get("initContainers", []), *spec["containers"]]
        passphrases = [e for c in containers for e in c.get("env", []) if e["name"] == PASSPHRASE]
        volumes = secret_volumes(workload, KEY_SECRET)
        if workload["kind"] != "Deployment" or name not in SIGNERS:
            assert not volumes and not passphrases, f"{name} signs no feed and gets no hub key"
            continue
        container = only_container(workload)
        assert passphrases == [
            {"name": PASSPHRASE, "valueFrom": {"secretKeyRef": {"name": KEY_SECRET, "key": "passphrase"}}}
        ], name
        (volume,) = volumes
        items = {i["key"]: i["path"] for i in volume["secret"]["items"]}
        assert items == {"hub.sec": "hub.sec", "hub.pub": "hub.pub"}  # not the passphrase
        assert volume["secret"]["defaultMode"] & 0o007 == 0  # no one outside the pod's group
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
        assert mount["readOnly"] is True
        assert posixpath.join(mount["mountPath"], items["hub.sec"]) == secret_file
        assert posixpath.join(mount["mountPath"], items["hub.pub"]) == public_file
        # What the publisher itself reads: the mounted files, not <home>/keys on its /tmp.
        hub = settings_of(environment(objects, workload), monkeypatch, HubKeySettings)
        assert str(hub.secret_path()) == secret_file and str(hub.public_path()) == public_file


def test_no_hub_key_material_is_in_the_manifests(overlay: tuple[str, list[Obj]]) -> None:
    """The key's Secret is the operator's, never rendered from the repository."""
    _, objects = overlay
    assert KEY_SECRET not in {s["metadata"]["name"] for s in of_kind(objects, "Secret")}
    for text in rendered_texts(objects):
        assert "BEGIN ENCRYPTED PRIVATE KEY" not in text and f"{PASSPHRASE}=" not in text


def test_the_readme_says_how_to_create_the_hub_key_secret() -> None:
    readme = (K8S / "README.md").read_text()
    assert f"create secret generic {KEY_SECRET}" in readme
    for item in ("genomhub keys generate-hub", "--from-file=hub.sec", "--from-file=hub.pub", "passphrase"):
        assert item in readme
