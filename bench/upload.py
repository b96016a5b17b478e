"""Upload throughput of the receiver over loopback, next to ``md5sum`` of the same file.

    .venv/bin/python bench/upload.py [--size-gb 2] [--keep-file]

Generates a random file (cached outside git under GENOMHUB_CACHE/bench), starts a local
broker and a real ``genomhub run receiver`` archiving to a temporary ``file://`` store,
then in one run: ``md5sum`` of the file (the baseline: md5 is the slower of the receiver's
two digests, so it sets the floor), a streaming aiohttp PUT of the file, and the uploader
client (``genomhub upload --no-checksum``) end to end. The receiver's RSS is polled with
psutil throughout. Figures go to stdout with their ratios to the baseline; the targets
are at least 0.8 of md5sum's rate and a peak RSS under 150 MB. The machine is shared, so
read the ratios, not the absolute rates.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.auth import token_hash  # noqa: E402
from shared.config import StateSettings  # noqa: E402
from shared.storage import CHUNK  # noqa: E402
from tests.support import Process, free_port, genomhub  # noqa: E402
from tools.kafka.broker import LocalBroker  # noqa: E402

TOKEN = "bench-token-hovedstaden"


def test_file(size: int) -> Path:
    """A random file of ``size`` bytes in the cache, made once."""
    path = StateSettings().cache / "bench" / f"upload-{size}.bin"
    if path.exists() and path.stat().st_size == size:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    with tmp.open("wb") as out:
        left = size
        while left:
            n = min(left, 16 << 20)
            out.write(os.urandom(n))
            left -= n
    tmp.rename(path)
    return path


class PeakRss:
    """Polls a process tree's resident memory until stopped; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def rss(self) -> int:
        procs = [self.process, *self.process.children(recursive=True)]
        return sum(p.memory_info().rss for p in procs if p.is_running())

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.02)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def md5sum(path: Path) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds and the digest of ``md5sum path``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    out = subprocess.run(["md5sum", str(path)], capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, out.split()[0]


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def read_file(path: Path) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    with path.open("rb") as handle:
        while chunk := await loop.run_in_executor(None, handle.read, CHUNK):
            yield chunk


async def raw_put(base: str, path: Path, sample: str) -> tuple[float, dict[str, object]]:
    """Create a submission and time one streaming PUT of ``path``."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    meta = {
        "region": "hovedstaden",
        "department": "bench",
        "sample_id": sample,
        "patient_id": "P-BENCH",
        "analysis_type": "WGS",
        "files": [{"name": path.name, "role": "raw_reads"}],
    }
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(base, headers=headers, timeout=timeout) as session:
        async with session.post("/v1/submissions", json=meta) as r:
            sid = (await r.json())["submission_id"]
        started = time.perf_counter()
        async with session.put(
            f"/v1/submissions/{sid}/files/{path.name}",
            data=read_file(path),
            headers={"Content-Length": str(path.stat().st_size)},
        ) as r:
            result: dict[str, object] = await r.json()
            if r.status != 200:
                raise RuntimeError(f"PUT failed: {r.status} {result}")
        return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-gb", type=float, default=2.0)
    parser.add_argument("--keep-file", action="store_true", help="keep the generated file in the cache")
    args = parser.parse_args()
    size = int(args.size_gb * 1e9)
    data = test_file(size)
    mb = size / 1e6

    work = Path(tempfile.mkdtemp(prefix="genomhub-bench-upload-"))
    broker = LocalBroker(work / "home", StateSettings().cache)
    receiver: Process | None = None
    try:
        state, _ = broker.start()
        port = free_port()
        env = {
            "GENOMHUB_HOME": str(work / "home"),
            "GENOMHUB_KAFKA_BOOTSTRAP": state.bootstrap,
            "GENOMHUB_RECEIVER_PORT": str(port),
            "GENOMHUB_STORE": (work / "store").as_uri(),
            "GENOMHUB_TOKENS": json.dumps({token_hash(TOKEN): "hovedstaden"}),
            "GENOMHUB_RECEIVER_MAX_FILE_SIZE": str(size * 2),
            "GENOMHUB_LOG_LEVEL": "WARNING",
        }
        receiver = Process(genomhub("run", "receiver"), work / "receiver.log", env).start()
        receiver.wait_http(port, timeout=120)
        assert receiver.proc is not None
        base = f"http://127.0.0.1:{port}"

        md5sum(data)  # warm the page cache, so both sides read the file from memory
        md5_s, md5_cpu, md5_hex = md5sum(data)
        server = psutil.Process(receiver.proc.pid)
        with PeakRss(receiver.proc.pid) as rss:
            idle_rss = rss.rss()
            cpu_before = cpu_seconds(server)
            put_s, result = asyncio.run(raw_put(base, data, "S-BENCH-PUT"))
            put_cpu = cpu_seconds(server) - cpu_before
            started = time.perf_counter()
            cli = subprocess.run(
                genomhub(
                    *("upload", "--url", base, "--no-checksum", "--region", "hovedstaden"),
                    *("--sample", "S-BENCH-CLI", "--patient", "P-BENCH", "--department", "bench"),
                    *("--analysis", "WGS", str(data)),
                ),
                env={**os.environ, **env, "GENOMHUB_UPLOAD_TOKEN": TOKEN},
                capture_output=True,
                text=True,
            )
            cli_s = time.perf_counter() - started
        if cli.returncode != 0:
            raise RuntimeError(cli.stderr)
        if result.get("md5") != md5_hex:
            raise RuntimeError(f"the receiver's md5 {result.get('md5')} differs from md5sum's {md5_hex}")

        md5_rate = mb / md5_s
        print(f"file: {size / 1e9:.2f} GB ({data}), {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
        print(f"md5sum:                        {md5_rate:7.0f} MB/s  ({md5_s:.2f} s)   baseline")
        print(
            f"receiver, streaming PUT:       {mb / put_s:7.0f} MB/s  ({put_s:.2f} s)   "
            f"{mb / put_s / md5_rate:.2f} x md5sum (target >= 0.80)"
        )
        print(
            f"genomhub upload (create..seal): {mb / cli_s:6.0f} MB/s  ({cli_s:.2f} s)   "
            f"{mb / cli_s / md5_rate:.2f} x md5sum (includes process start)"
        )
        print(
            f"receiver RSS: idle {idle_rss / 1e6:.0f} MB, peak {rss.peak / 1e6:.0f} MB during both uploads "
            f"(target < 150 MB)"
        )
        print(
            f"CPU per GB (load-independent): md5sum {md5_cpu / size * 1e9:.2f} s, "
            f"receiver during the PUT {put_cpu / size * 1e9:.2f} s (md5 + sha256 + socket + disk write)"
        )
        print(f"digests agree with md5sum: {result.get('md5') == md5_hex}")
    finally:
        if receiver is not None:
            receiver.stop()
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
        if not args.keep_file:
            data.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
