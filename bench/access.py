"""Working copies out of the archive, next to what the machine does without genomhub.

    .venv/bin/python bench/access.py [--size-gb 2] [--cram-gb 2] [--region-mb 1]

In one run, over loopback, with the access API in a process of its own (aiohttp, its grant
store on SQLite, the archive a folder of Crypt4GH bodies as the receiver stores them) and
``curl`` as the client:

- a whole-file working copy of a random file of ``--size-gb`` (the header re-encrypted to the
  department's key, the body as stored, every segment's tag checked on the way), against
  ``cat`` of the stored body to /dev/null: both with the body in the page cache, and both
  with it evicted first (``posix_fadvise(DONTNEED)``: read from disk). Target: >= 0.8 of cat;
- the time to the copy's first byte for a 10 MB and a ``--size-gb`` file: the header is all
  that is re-encrypted, so it must not grow with the file;
- an htsget slice of ``--region-mb`` of a CRAM of about ``--cram-gb`` (reads simulated on a
  50 Mb random reference, coordinate-ordered, written by samtools; made once and cached
  under GENOMHUB_CACHE/bench): the ticket and the download of the slice, against
  ``samtools view -C`` of the same region from the plaintext CRAM. Target: about 1.

Peak RSS of the API process is printed too: a copy streams, whatever the file's size.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.access.discovery import KnownSample  # noqa: E402
from services.access.objects import ArchivedObject, object_id  # noqa: E402
from services.access.store import AccessStore  # noqa: E402
from shared.auth import token_hash  # noqa: E402
from shared.config import StateSettings  # noqa: E402
from shared.encryption import BodyEncryptor, load_archive_key, write_key_pair  # noqa: E402
from shared.events import AnalysisType, Deliverable, Region  # noqa: E402
from shared.headers import HeaderStore  # noqa: E402
from tests.support import free_port  # noqa: E402

TOKENS: dict[str, Any] = {
    "bench-clinician": {"holder": "syddanmark", "roles": ["clinician"]},
    "bench-steward-s": {"holder": "syddanmark", "roles": ["data-steward"]},
    "bench-steward-h": {"holder": "hovedstaden", "roles": ["data-steward"]},
}
DEPARTMENT = "OUH Klinisk Genetik"
SAMPLE = "RH-BENCH"
PASSPHRASE = "bench-pass"
CONTIGS = [(f"chr{i}", 5_000_000) for i in range(1, 11)]
READ = 100
CHUNK = 1 << 24


# -- the files --------------------------------------------------------------------------


def random_file(path: Path, size: int) -> Path:
    if not path.exists() or path.stat().st_size != size:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as out:
            for start in range(0, size, CHUNK):
                out.write(os.urandom(min(CHUNK, size - start)))
    return path


def bench_reference(folder: Path) -> Path:
    fasta = folder / "bench-reference.fa"
    if not Path(f"{fasta}.fai").exists():
        rng = random.Random(20261203)
        with fasta.open("w") as out:
            for name, length in CONTIGS:
                out.write(f">{name}\n")
                sequence = "".join(rng.choices("ACGT", k=length))
                out.writelines(sequence[i : i + 60] + "\n" for i in range(0, length, 60))
        subprocess.run(["samtools", "faidx", str(fasta)], check=True)
    return fasta


def simulated_cram(folder: Path, gigabytes: float) -> tuple[Path, Path]:
    """A coordinate-ordered CRAM of reads copied from the reference, with random qualities
    (what makes a CRAM large), and the reference; made once."""
    reference = bench_reference(folder)
    cram = folder / f"bench-{gigabytes:g}gb.cram"
    if Path(f"{cram}.crai").exists():
        return cram, reference
    sequences = {}
    with reference.open() as fasta:
        name = ""
        parts: list[str] = []
        for line in fasta:
            if line.startswith(">"):
                if name:
                    sequences[name] = "".join(parts)
                name, parts = line[1:].strip(), []
            else:
                parts.append(line.strip())
        sequences[name] = "".join(parts)
    reads = int(gigabytes * (1 << 30) / 80)  # about 80 bytes a read in CRAM, mostly qualities
    per_contig = reads // len(CONTIGS)
    rng = random.Random(7)
    qualities = ["".join(rng.choices([chr(33 + q) for q in range(2, 42)], k=READ)) for _ in range(4096)]
    header = "@HD\tVN:1.6\tSO:coordinate\n" + "".join(f"@SQ\tSN:{n}\tLN:{n_}\n" for n, n_ in CONTIGS)
    header += f"@RG\tID:{SAMPLE}\tSM:{SAMPLE}\tPL:ILLUMINA\n"
    writer = subprocess.Popen(
        ["samtools", "view", "-C", "-T", str(reference), "-o", str(cram), "-"],
        stdin=subprocess.PIPE,
        text=True,
    )
    assert writer.stdin is not None
    writer.stdin.write(header)
    for name, length in CONTIGS:
        sequence = sequences[name]
        step = (length - READ) / per_contig
        lines = []
        for i in range(per_contig):
            pos = int(i * step)
            lines.append(
                f"r{name}.{i}\t0\t{name}\t{pos + 1}\t60\t{READ}M\t*\t0\t0\t"
                f"{sequence[pos : pos + READ]}\t{qualities[i & 4095]}\tRG:Z:{SAMPLE}\n"
            )
            if len(lines) == 100_000:
                writer.stdin.write("".join(lines))
                lines = []
        writer.stdin.write("".join(lines))
    writer.stdin.close()
    if writer.wait() != 0:
        raise RuntimeError("samtools could not write the CRAM")
    subprocess.run(["samtools", "index", str(cram)], check=True)
    return cram, reference


def archived(
    path: Path, name: str, deliverable: Deliverable, store: Path, headers: HeaderStore, recipient: bytes
) -> ArchivedObject:
    """``path`` encrypted into the archive folder as the receiver stores it."""
    body = store / "hovedstaden" / SAMPLE / name
    body.parent.mkdir(parents=True, exist_ok=True)
    encryptor = BodyEncryptor(recipient)
    digest = hashlib.sha256()
    with path.open("rb") as source, body.open("wb") as out:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            out.writelines(encryptor.feed(chunk))
        out.writelines(encryptor.finish())
    headers.write(body.as_uri(), encryptor.header)
    oid = object_id(Region.HOVEDSTADEN, SAMPLE, name)
    received = datetime(2026, 2, 10, tzinfo=UTC)
    return ArchivedObject(
        oid,
        Region.HOVEDSTADEN,
        SAMPLE,
        name,
        deliverable,
        path.stat().st_size,
        digest.hexdigest(),
        body.as_uri(),
        received,
    )


# -- the API process --------------------------------------------------------------------


def serve(work: Path, port: int) -> None:
    from aiohttp import web

    from services.access.api import AccessApi
    from services.access.delivery import Delivery
    from shared.auth import Tokens
    from shared.events import Event
    from shared.http import make_web

    key = load_archive_key(work / "archive" / "archive.sec", work / "archive" / "archive.pub", PASSPHRASE)
    headers = HeaderStore((work / "store").as_uri(), (work / "headers").as_uri())
    store = AccessStore(f"sqlite:///{work / 'access.sqlite'}")

    async def emit(event: Event, event_id: str) -> None:  # no broker: the ledger keeps them
        return None

    app = make_web([])
    api = AccessApi(store, emit, 14, delivery=Delivery(headers, lambda: key, b"bench-url-secret", 60))
    api.install(app, Tokens({token_hash(t): e for t, e in TOKENS.items()}))
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# -- measuring --------------------------------------------------------------------------


def call(base: str, path: str, token: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        base + path,
        data=data,
        method="POST" if body is not None else "GET",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read())


def evict(path: Path) -> None:
    """Drop ``path``'s pages from the page cache, so the next read comes from the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def timed(command: list[str], before: Any = None, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        if before is not None:
            before()
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - started)
    return best


def first_byte(url: str, runs: int = 5) -> float:
    """Seconds from the request to the copy's first byte (the header, re-encrypted on the way).

    Each run closes the connection after that byte; the API notices only at its next write, so
    the next run waits a second for it to settle rather than time the last one's tail."""
    best = float("inf")
    for _ in range(runs):
        time.sleep(1.0)
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=60) as response:
            response.read(1)
            best = min(best, time.perf_counter() - started)
    return best


def cpu_seconds(pid: int) -> float:
    """User and system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-gb", type=float, default=2.0)
    parser.add_argument("--cram-gb", type=float, default=2.0)
    parser.add_argument("--region-mb", type=float, default=1.0)
    parser.add_argument("--serve", nargs=2, metavar=("WORK", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), int(args.serve[1]))
        return
    cache = StateSettings().cache / "bench"
    cache.mkdir(parents=True, exist_ok=True)
    size = int(args.size_gb * (1 << 30))
    print(f"making the files (cached in {cache}) ...", flush=True)
    small = random_file(cache / "access-10mb.bin", 10 << 20)
    large = random_file(cache / f"access-{size}.bin", size)
    cram, reference = simulated_cram(cache, args.cram_gb)

    work = Path(tempfile.mkdtemp(prefix="genomhub-bench-access-"))
    server = None
    try:
        key = load_archive_key(*write_key_pair(work / "archive", PASSPHRASE), PASSPHRASE)
        _, department_public = write_key_pair(work / "department", PASSPHRASE, DEPARTMENT)
        headers = HeaderStore((work / "store").as_uri(), (work / "headers").as_uri())
        files = [
            (small, "small.bin", Deliverable.CLINICAL_OUTPUT),
            (large, "large.bin", Deliverable.CLINICAL_OUTPUT),
            (cram, f"{SAMPLE}.cram", Deliverable.HARMONISED_CRAM),
            (Path(f"{cram}.crai"), f"{SAMPLE}.cram.crai", Deliverable.HARMONISED_CRAM),
        ]
        print("archiving them (Crypt4GH, as the receiver stores them) ...", flush=True)
        objects = {
            name: archived(path, name, kind, work / "store", headers, key.public)
            for path, name, kind in files
        }
        store = AccessStore(f"sqlite:///{work / 'access.sqlite'}")
        store.project(
            KnownSample(
                Region.HOVEDSTADEN,
                SAMPLE,
                "NP-BENCH",
                AnalysisType.WGS,
                datetime(2026, 2, 10, tzinfo=UTC),
                True,
            ),
            "e1",
        )
        store.project_objects(list(objects.values()))
        store.dispose()

        port = free_port()
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(work), str(port)])
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        public = department_public.read_text()
        call(
            base,
            "/v1/access/department-keys",
            "bench-steward-s",
            {"region": "syddanmark", "department": DEPARTMENT, "public_key": public},
        )
        asked = {
            "owner": "hovedstaden",
            "samples": [SAMPLE],
            "department": DEPARTMENT,
            "wants": ["clinical-output", "harmonised-cram"],
            "purpose": "patient-treatment",
            "case_reference": "BENCH-1",
            "urgency": "routine",
        }
        request_id = call(base, "/v1/access/requests", "bench-clinician", asked)["request"]["request_id"]
        call(base, f"/v1/access/requests/{request_id}/decision", "bench-steward-h", {"grant": True})

        def url_of(name: str) -> str:
            oid = objects[name].object_id
            url: str = call(base, f"/ga4gh/drs/v1/objects/{oid}/access/{request_id}", "bench-clinician")[
                "url"
            ]
            return url

        stored = Path(objects["large.bin"].url[len("file://") :])
        large_url = url_of("large.bin")
        print(
            f"\naccess benchmark: {args.size_gb:g} GB whole file, {args.cram_gb:g} GB CRAM; {os.cpu_count()} cores"
        )
        for label, before in (("page cache", None), ("from disk", lambda: evict(stored))):
            cat = timed(["cat", str(stored)], before)
            used = cpu_seconds(server.pid)
            copy = timed(["curl", "-sf", "-o", "/dev/null", large_url], before)
            gb = stored.stat().st_size / (1 << 30)
            per_gb = (cpu_seconds(server.pid) - used) / 3 / gb
            print(
                f"  whole file, {label:10}  cat {gb / cat:6.2f} GB/s   working copy {gb / copy:6.2f} GB/s"
                f"   = {cat / copy:.2f} x cat   (the API: {per_gb:.2f} CPU-s/GB)"
            )
        small_first = first_byte(url_of("small.bin"))
        large_first = first_byte(large_url)
        print(
            f"  first byte (header re-encrypted): 10 MB {small_first * 1000:.1f} ms,"
            f" {args.size_gb:g} GB {large_first * 1000:.1f} ms"
        )

        contig, length = CONTIGS[len(CONTIGS) // 2]
        start = length // 2
        end = start + int(args.region_mb * 1_000_000)
        region = f"{contig}:{start + 1}-{end}"
        samtools = timed(
            ["samtools", "view", "-C", "-T", str(reference), "-o", "/dev/null", str(cram), region]
        )
        cram_id = objects[f"{SAMPLE}.cram"].object_id
        ticket_path = f"/ga4gh/htsget/v1/reads/{cram_id}?referenceName={contig}&start={start}&end={end}"
        best, sliced = float("inf"), 0
        for _ in range(3):
            started = time.perf_counter()
            ticket = call(base, ticket_path, "bench-clinician")
            out = work / "slice.c4gh"
            subprocess.run(["curl", "-sf", "-o", str(out), ticket["htsget"]["urls"][0]["url"]], check=True)
            best = min(best, time.perf_counter() - started)
            sliced = out.stat().st_size
        print(
            f"  htsget slice of {region} ({sliced / 1e6:.1f} MB, of {cram.stat().st_size / 1e9:.2f} GB):"
            f" {best:.2f} s; samtools view -C {samtools:.2f} s   = {best / samtools:.2f} x samtools"
        )
        print(f"  peak RSS of the access API: {peak_rss_mb(server.pid):.0f} MB")
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
