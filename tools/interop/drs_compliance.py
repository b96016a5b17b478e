"""The GA4GH DRS compliance suite (PyPI ``drs-compliance-suite``), installed where it can run.

The suite pins its own old versions of Flask, structlog, requests and pytest, which genomhub's
environment cannot share, so it lives in a virtual environment of its own under the cache,
made once from PyPI: :func:`suite` returns its command, :func:`run` runs it against a DRS
base URL with a config of objects to check and returns its report.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from shared.config import StateSettings

VERSION = "1.0.3"
"""The suite's release; it checks DRS 1.2.0 (its newest schemas)."""
DRS_VERSION = "1.2.0"


REQUIREMENTS = (f"drs-compliance-suite=={VERSION}", "jsonschema==4.17.3", "Werkzeug==2.2.3")
"""The suite; the jsonschema its validators import but its package does not declare; and the
Werkzeug of its Flask 2.2 (which imports what Werkzeug 3 removed)."""


def suite(cache: Path | None = None) -> Path:
    """The suite's command, its environment made first if it is not there yet."""
    home = (cache or StateSettings().cache) / "tools" / f"drs-compliance-suite-{VERSION}"
    installed = home / "installed.txt"
    if not installed.exists() or installed.read_text().split() != list(REQUIREMENTS):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(home)], check=True)
        pip = [str(home / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, *REQUIREMENTS], check=True)
        # The released wheels import a top-level module that their repository has and they do
        # not ship (``from supported_drs_versions import ...``): it names the DRS versions
        # the suite has schemas for, which the wheel's own schema folders say is 1.2.0.
        (site,) = (home / "lib").glob("python3*/site-packages")
        (site / "supported_drs_versions.py").write_text(f"SUPPORTED_DRS_VERSIONS = [{DRS_VERSION!r}]\n")
        installed.write_text("\n".join(REQUIREMENTS))
    return home / "bin" / "drs-compliance-suite"


def run(base_url: str, config: dict[str, Any], cache: Path | None = None) -> dict[str, Any]:
    """Run the suite against ``base_url`` (``.../ga4gh/drs/v1``) with ``config`` (its
    ``service_info``, ``drs_object_info`` and ``drs_object_access`` entries); its report."""
    command = suite(cache)
    with tempfile.TemporaryDirectory(prefix="genomhub-drs-compliance-") as work:
        config_file, report = Path(work) / "config.json", Path(work) / "report.json"
        config_file.write_text(json.dumps(config))
        arguments = ["--server_base_url", base_url, "--platform_name", "genomhub"]
        arguments += ["--platform_description", "genomhub access service (National Genome Center)"]
        arguments += [
            "--drs_version",
            DRS_VERSION,
            "--config_file",
            str(config_file),
            "--report_path",
            str(report),
        ]
        done = subprocess.run([str(command), *arguments], cwd=work, capture_output=True, text=True)
        if done.returncode != 0 or not report.exists():
            raise RuntimeError(f"the DRS compliance suite did not run:\n{done.stdout}\n{done.stderr}")
        result: dict[str, Any] = json.loads(report.read_text())
        return result


def cases(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Each case of a report: its phase, test, case name and status."""
    return [
        (phase["phase_name"], test["test_name"], case["case_name"], case["status"])
        for phase in report.get("phases", [])
        for test in phase.get("tests", [])
        for case in test.get("cases", [])
    ]
