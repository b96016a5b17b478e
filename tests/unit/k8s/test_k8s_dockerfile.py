"""The services' image, checked by reading: Docker is not available where the tests run."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib

from shared.topics import SERVICES
from tests.unit.k8s.k8s_objects import K8S, ROOT, render

DOCKERFILE = (ROOT / "Dockerfile").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DEBIAN_TOOLS = ("bwa", "samtools", "bcftools", "tabix", "minimap2")
COMPILERS = ("build-essential", "gcc", "g++", "cc", "libc6-dev", "make")
# Tracked files of the packages that the running services never read: the extension's source
# and stub (compiled into the wheel's module), and the notes and installer of developer tools.
NOT_NEEDED_AT_RUN_TIME = {
    "services/validator/_fastq_scan.c",
    "services/validator/_fastq_scan.pyi",
    "tools/debian/install.sh",
    "tools/debian/packages.txt",
    "tools/jaeger/README.md",
}

Instruction = tuple[str, str]


def instructions() -> list[Instruction]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def stages() -> list[list[Instruction]]:
    """The instructions of each build stage, each starting with its FROM."""
    result: list[list[Instruction]] = []
    for step in instructions():
        if step[0] == "FROM":
            result.append([])
        assert result, "the Dockerfile must start with FROM"
        result[-1].append(step)
    return result


def runs(stage: list[Instruction]) -> list[str]:
    return [args for word, args in stage if word == "RUN"]


def apt_installed(stage: list[Instruction]) -> set[str]:
    packages: set[str] = set()
    for args in runs(stage):
        for command in args.split("&&"):
            words = command.split()
            if "apt-get" in words and "install" in words:
                packages |= {w for w in words[words.index("install") + 1 :] if not w.startswith("-")}
    return packages


def test_build_stage_compiles_the_wheels_runtime_stage_is_slim_with_the_debian_tools() -> None:
    build, runtime = stages()
    build_from, runtime_from = build[0][1].split(), runtime[0][1].split()
    assert build_from[0] == runtime_from[0], "wheels built against the runtime's own Python"
    assert build_from[0].startswith("python:3.11-slim")
    assert build_from[1:] == ["AS", "build"]
    assert "build-essential" in apt_installed(build)
    assert set(DEBIAN_TOOLS) <= apt_installed(runtime)
    assert not apt_installed(runtime) & set(COMPILERS), "the runtime image carries no compiler"
    debian_packages = (ROOT / "tools" / "debian" / "packages.txt").read_text().split()
    assert set(DEBIAN_TOOLS) <= set(debian_packages), "the image's tools are the ones the tests use"


def test_validator_extension_is_built_by_the_wheel() -> None:
    extensions = PYPROJECT["tool"]["setuptools"]["ext-modules"]
    assert {e["name"] for e in extensions} >= {"services.validator._fastq_scan"}
    for extension in extensions:
        for source in extension["sources"]:
            assert (ROOT / source).is_file(), source
    build, _ = stages()
    wheel = [args for args in runs(build) if re.search(r"\bpip wheel\b", args)]
    assert len(wheel) == 1
    assert re.search(r"-c constraints\.txt\b", wheel[0]), "dependencies at their pinned versions"
    assert re.search(r"\s\.$", wheel[0]), "the project itself is built"
    copied = " ".join(args for word, args in build if word == "COPY")
    for needed in ("pyproject.toml", "constraints.txt", "README.md", "shared", "services"):
        assert needed in copied
    assert "tools" not in copied.split(), "the local stack is no part of the image"


def test_runtime_installs_only_the_built_wheels() -> None:
    _, runtime = stages()
    (install,) = [args for args in runs(runtime) if "pip install" in args]
    assert "--no-index" in install and "genomhub" in install.split()
    mounts = dict(re.findall(r"--mount=type=bind,from=(\w+),source=(\S+),target=\S+", install))
    (wheels,) = re.findall(r"--find-links (\S+)", install)
    assert mounts.get("build") == wheels
    assert re.search(r"-c \S*constraints\.txt\b", install)
    # Nothing of the source tree is in the runtime stage: it runs what the wheel ships.
    assert not [args for word, args in runtime if word in ("COPY", "ADD")]


def tracked_package_files() -> list[str]:
    packages = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    roots = sorted({p.rstrip("*") for p in packages})
    listed = subprocess.run(["git", "ls-files", *roots], cwd=ROOT, capture_output=True, text=True, check=True)
    return listed.stdout.split()


def test_package_data_ships_every_file_the_services_read() -> None:
    """The image installs the wheel, not the source tree: every non-Python file the services
    read at run time (migrations, reference tables, schemas, Nextflow configs) must be in the
    wheel through pyproject's package-data."""
    package_data: dict[str, list[str]] = PYPROJECT["tool"]["setuptools"]["package-data"]
    shipped: set[str] = set()
    for package, patterns in package_data.items():
        base = ROOT / package.replace(".", "/")
        for pattern in patterns:
            shipped |= {str(p.relative_to(ROOT)) for p in base.glob(pattern) if p.is_file()}
    tracked = tracked_package_files()
    assert "services/receiver/migrations/script.py.mako" in tracked
    missing = [
        f for f in tracked if not f.endswith(".py") and f not in shipped and f not in NOT_NEEDED_AT_RUN_TIME
    ]
    assert not missing, f"not in the wheel (add to [tool.setuptools.package-data]): {missing}"
    for migrations in sorted((ROOT / "services").glob("*/migrations")):
        assert str(migrations.relative_to(ROOT) / "script.py.mako") in shipped
        versions = [str(p.relative_to(ROOT)) for p in (migrations / "versions").glob("*.py")]
        assert versions and set(versions) <= shipped, migrations


def test_runs_as_the_non_root_user_the_manifests_expect() -> None:
    _, runtime = stages()
    (user,) = [args for word, args in runtime if word == "USER"]
    uid = int(user.split(":")[0])
    assert uid > 0
    assert [json.loads(args) for word, args in runtime if word == "ENTRYPOINT"] == [["genomhub"]]
    dev = render(K8S / "overlays" / "dev")
    for name in SERVICES:
        (deployment,) = [o for o in dev if o["kind"] == "Deployment" and o["metadata"]["name"] == name]
        assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == uid


def test_build_context_leaves_out_local_state_and_host_builds() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for path in (".git", ".venv", ".genomhub", "tests", "k8s", "**/*.so"):
        assert path in ignored
