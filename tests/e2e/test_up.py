"""`genomhub up`: the whole stack from one command, a live status table, a clean Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from shared.topics import SERVICES
from tools.background import free_port, pid_alive


def test_up_runs_every_service_shows_status_and_stops_cleanly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "GENOMHUB_KAFKA_BOOTSTRAP"}
    env["GENOMHUB_HOME"] = str(tmp_path / "home")
    env.update({f"GENOMHUB_{s.upper()}_PORT": str(free_port()) for s in SERVICES})
    out = tmp_path / "up.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("genomhub")), "up", "--no-jaeger"],
            stdout=sink, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 180
            table = ""
            while time.monotonic() < deadline and proc.poll() is None:
                text = out.read_text(errors="replace")
                rows = {
                    m.group(1): m
                    for m in re.finditer(r"^(\w+)\s+(\d+)\s+(yes|no)\s+(\d+)\s+(\S+)\s+(\d+)$", text, re.M)
                }
                if len(rows) == len(SERVICES) and all(r.group(3) == "yes" for r in rows.values()):
                    table = text
                    break
                time.sleep(1)
            assert table, f"no table with every service ready:\n{out.read_text(errors='replace')[-3000:]}"
            pids = [int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s+yes", table, re.M)]
            assert len(pids) == len(SERVICES) and all(pid_alive(p) for p in pids)
            assert re.search(r"^service\s+pid\s+ready\s+restarts\s+lag\s+dlq$", table, re.M)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    assert "stopping the stack" in out.read_text()
    time.sleep(1)
    assert not [p for p in pids if pid_alive(p)], "every service stopped with the stack"
    broker = tmp_path / "home" / "kafka" / "broker.json"
    assert broker.exists()
    assert not pid_alive(int(json.loads(broker.read_text())["pid"])), "the broker it started stopped too"
