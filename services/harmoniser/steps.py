"""Running pipeline commands as tracked processes, and Nextflow's trace file format.

Each step is a bash script run with ``set -euo pipefail`` in its own process group, so that a
failure anywhere in a pipe fails the step, and a job can be stopped (or its orphans found
after a crash) as one group. Steps append to a trace file in Nextflow's format, so the local
backend's ``pipeline_info/`` reads like Sarek's and one parser follows both.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import signal
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

TRACE_FIELDS = ("task_id", "hash", "native_id", "name", "status", "exit", "submit", "duration", "realtime")
ProcessHook = Callable[[int | None], None]
"""Told the process group id of a step when it starts, and None when it ends."""


class PipelineFailed(Exception):
    """A run failed; ``log_tail`` is what an operator needs to see first."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail


@dataclass(frozen=True)
class Step:
    name: str
    script: str


def tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return ""
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - 64 * 1024))
        text = handle.read().decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def _human(seconds: float) -> str:
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.1f}s"


def trace_timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d_%H-%M-%S")


def append_trace(
    path: Path, task_id: int, step: Step, status: str, exit_code: int, submit: float, ended: float
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        if new:
            writer.writerow(TRACE_FIELDS)
        writer.writerow(
            [
                task_id,
                f"{task_id:02x}/{zlib.crc32(step.name.encode()) & 0xFFFFFF:06x}",
                "-",
                step.name,
                status,
                exit_code,
                datetime.fromtimestamp(submit, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
                _human(ended - submit),
                _human(ended - submit),
            ]
        )


def parse_trace(path: Path) -> list[dict[str, str]]:
    """The task records of a Nextflow trace file (tab-separated with a header line)."""
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def trace_summary(records: list[dict[str, str]]) -> dict[str, int]:
    """Tasks by status (COMPLETED, FAILED, ABORTED, CACHED, ...)."""
    return dict(Counter(r.get("status", "?") for r in records))


def failed_tasks(records: list[dict[str, str]]) -> list[str]:
    return [f"{r.get('name')} (exit {r.get('exit')})" for r in records if r.get("status") == "FAILED"]


GROUP_GUARD = """trap '' INT
bash -c "$1" &
step=$!
trap 'trap "" TERM; kill -TERM -- -$$ 2>/dev/null
for _ in $(seq 50); do kill -0 "$step" 2>/dev/null || break; sleep 0.1; done
kill -KILL -- -$$' TERM
wait "$step"
"""
"""The leader of a step's process group: it runs the step's script as its child and, told
SIGTERM, stops the whole group, SIGTERM first (Nextflow then cancels the jobs it submitted)
and SIGKILL five seconds later. It gets SIGTERM when the harmoniser dies too: ``setpriv
--pdeathsig`` makes the kernel send it when its parent goes, however the parent went (a
SIGKILL, an OOM kill), so no run outlives the replica that owns it. A signal sent to the
child itself (``kill_group``'s SIGTERM reaches everyone in the group) only ends the child,
whose status the guard then returns."""


async def run_script(
    script: str, cwd: Path, log: Path, on_process: ProcessHook, *, shell_options: str = "set -euo pipefail"
) -> int:
    """Run ``script`` with bash in its own process group; output goes to ``log``.

    Cancelling the caller terminates the whole group (SIGTERM, then SIGKILL); so does the
    death of this process (:data:`GROUP_GUARD`).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            "setpriv",
            "--pdeathsig",
            "TERM",
            "bash",
            "-c",
            GROUP_GUARD,
            "genomhub-step",
            f"{shell_options}\n{script}",
            cwd=cwd,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
        on_process(proc.pid)
        try:
            return await proc.wait()
        except asyncio.CancelledError:
            kill_group(proc.pid)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 10)
            raise
        finally:
            on_process(None)


def kill_group(pgid: int, grace: float = 5.0) -> None:
    """SIGTERM a process group, then SIGKILL what is left after ``grace`` seconds."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            os.killpg(pgid, 0)
            time.sleep(0.1)
        os.killpg(pgid, signal.SIGKILL)


async def run_steps(steps: list[Step], cwd: Path, logs: Path, trace: Path, on_process: ProcessHook) -> None:
    """Run steps in order, tracing each; raise :class:`PipelineFailed` at the first failure."""
    for task_id, step in enumerate(steps, start=1):
        log = logs / f"{task_id:02d}-{step.name.split()[0].lower()}.log"
        submit = time.time()
        code = await run_script(step.script, cwd, log, on_process)
        append_trace(trace, task_id, step, "COMPLETED" if code == 0 else "FAILED", code, submit, time.time())
        if code != 0:
            raise PipelineFailed(f"{step.name} exited with status {code}", tail(log))
