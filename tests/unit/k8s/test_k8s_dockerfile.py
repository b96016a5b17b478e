"""The services' image, checked by reading: Docker is not available where the tests run."""

from __future__ import annotations

import json
import re

from k8s_objects import K8S, ROOT, SERVICES

from tools.k8s.kustomize import render

DOCKERFILE = (ROOT / "Dockerfile").read_text()
DEBIAN_TOOLS = ("bwa", "samtools", "bcftools", "tabix", "minimap2")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def test_python_311_slim_base_with_the_debian_tools() -> None:
    steps = instructions()
    assert steps[0][0] == "FROM" and steps[0][1].startswith("python:3.11-slim")
    installs = [args for word, args in steps if word == "RUN" and "apt-get install" in args]
    assert len(installs) == 1
    assert set(DEBIAN_TOOLS) <= set(installs[0].split())
    debian_packages = (ROOT / "tools" / "debian" / "packages.txt").read_text().split()
    assert set(DEBIAN_TOOLS) <= set(debian_packages), "the image's tools are the ones the tests use"


def test_installs_the_project_with_its_pins() -> None:
    runs = [args for word, args in instructions() if word == "RUN"]
    assert any(re.search(r"pip install -c constraints\.txt \.(\s|$)", args) for args in runs)
    copied = " ".join(args for word, args in instructions() if word == "COPY")
    for needed in ("pyproject.toml", "constraints.txt", "README.md", "shared", "services", "tools"):
        assert needed in copied


def test_runs_as_the_non_root_user_the_manifests_expect() -> None:
    steps = instructions()
    (user,) = [args for word, args in steps if word == "USER"]
    uid = int(user.split(":")[0])
    assert uid > 0
    assert [json.loads(args) for word, args in steps if word == "ENTRYPOINT"] == [["genomhub"]]
    dev = render(K8S / "overlays" / "dev")
    for name in SERVICES:
        (deployment,) = [o for o in dev if o["kind"] == "Deployment" and o["metadata"]["name"] == name]
        assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == uid


def test_build_context_leaves_out_local_state() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for path in (".git", ".venv", ".genomhub", "tests", "k8s"):
        assert path in ignored
