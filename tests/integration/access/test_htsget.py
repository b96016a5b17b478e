"""htsget 1.3 slices of an archived CRAM and VCF: the ticket, its one URL, and the slice, a
Crypt4GH file that the department's key opens into a CRAM or VCF samtools and bcftools read,
holding every record of the range; the PyPI ``htsget`` client fetching one; and each
refusal in htsget's own error shape.

The archive is a folder holding a real CRAM and VCF (samtools and tabix wrote them and
their indexes, from the synthetic reference) encrypted as the receiver stores them; the API
runs under aiohttp's test server on loopback, events go to a recording emitter.
"""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import htsget
import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from services.access.api import AccessApi
from services.access.commands import fetch
from services.access.delivery import Delivery
from services.access.discovery import KnownSample
from services.access.objects import ArchivedObject, object_id
from services.access.store import AccessStore, KnownRecall
from shared.auth import Tokens, token_hash
from shared.encryption import BodyEncryptor, encrypt_chunks, load_archive_key, write_key_pair
from shared.events import AnalysisType, Deliverable, Event, RecallRequested, Region, WorkingCopyIssued
from shared.headers import HeaderStore
from shared.http import make_web
from shared.tiers import ArchiveTiers
from tests.support import crypt4gh_decrypt
from tests.unit.validator.corpus import (
    aligned_sam,
    reference_sequences,
    sam_header,
    synthetic_fasta,
    write_cram,
    write_vcf,
)

TOKENS: dict[str, Any] = {
    "ouh-clinician": {"holder": "syddanmark", "roles": ["clinician"]},
    "ouh-steward": {"holder": "syddanmark", "roles": ["data-steward"]},
    "rh-steward": {"holder": "hovedstaden", "roles": ["data-steward"]},
    "aau-clinician": {"holder": "nordjylland", "roles": ["clinician"]},
}
DEPARTMENT = "OUH Klinisk Genetik"
RECEIVED = datetime(2026, 2, 10, 8, 0, tzinfo=UTC)
SAMPLE = "RH-1"
FILES = (
    ("RH-1.cram", Deliverable.HARMONISED_CRAM),
    ("RH-1.cram.crai", Deliverable.HARMONISED_CRAM),
    ("RH-1.vcf.gz", Deliverable.HARMONISED_VCF),
    ("RH-1.vcf.gz.tbi", Deliverable.HARMONISED_VCF),
)


@pytest.fixture(scope="module")
def genome(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CRAM of 30,000 read pairs (several containers a reference) and a VCF of a variant
    every 37 bases (many BGZF blocks), with their indexes, as samtools and tabix write them."""
    folder = tmp_path_factory.mktemp("genome")
    cram = write_cram(
        folder / "RH-1.cram", synthetic_fasta(), sam_header(SAMPLE), aligned_sam(30_000, SAMPLE)
    )
    subprocess.run(["samtools", "index", str(cram)], check=True)
    refs = reference_sequences()
    lines = ["##fileformat=VCFv4.2", *(f"##contig=<ID={n},length={len(s)}>" for n, s in refs.items())]
    lines += ['##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">']
    lines += [f"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t{SAMPLE}"]
    for name, sequence in refs.items():
        for pos in range(50, len(sequence), 37):
            base = sequence[pos - 1]
            lines.append(f"{name}\t{pos}\t.\t{base}\t{'T' if base == 'G' else 'G'}\t50\tPASS\t.\tGT\t0/1")
    write_vcf(folder, "RH-1.vcf.gz", "\n".join(lines) + "\n")
    return folder


@dataclass
class Slices:
    client: TestClient[Any, Any]
    store: AccessStore
    sent: list[Event]
    genome: Path
    secret_key: Path
    objects: dict[str, ArchivedObject]
    store_dir: Path
    tiers: ArchiveTiers

    async def call(self, path: str, token: str | None = "ouh-clinician", body: Any = None) -> tuple[int, Any]:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        response = await self.client.request("POST" if body else "GET", path, json=body, headers=headers)
        return response.status, await response.json()

    async def granted(self, **extra: Any) -> str:
        public = (self.secret_key.parent / "archive.pub").read_text()
        key = {"region": "syddanmark", "department": DEPARTMENT, "public_key": public}
        assert (await self.call("/v1/access/department-keys", "ouh-steward", key))[0] == 201
        asked = {
            "owner": "hovedstaden",
            "samples": [SAMPLE],
            "department": DEPARTMENT,
            "wants": ["harmonised-cram", "harmonised-vcf"],
            "purpose": "patient-treatment",
            "case_reference": "OUH-2026-0042",
            "urgency": "urgent",
            **extra,
        }
        _, made = await self.call("/v1/access/requests", "ouh-clinician", asked)
        request_id: str = made["request"]["request_id"]
        decided = await self.call(f"/v1/access/requests/{request_id}/decision", "rh-steward", {"grant": True})
        assert decided[0] == 201, decided
        return request_id

    def id_of(self, name: str) -> str:
        return self.objects[name].object_id

    async def fetched(self, ticket: dict[str, Any]) -> bytes:
        """The plaintext of the ticket's one URL, as the department's key opens it."""
        (url,) = ticket["htsget"]["urls"]
        response = await self.client.get(url["url"][url["url"].index("/v1/working-copies/") :])
        assert response.status == 200
        copy = await response.read()
        assert len(copy) == int(response.headers["Content-Length"])
        return await asyncio.to_thread(crypt4gh_decrypt, copy, self.secret_key, "ouh-pass")


@pytest.fixture
async def slices(tmp_path: Path, genome: Path) -> AsyncIterator[Slices]:
    archive_secret, archive_public = write_key_pair(tmp_path / "archive", "archive-pass")
    archive_key = load_archive_key(archive_secret, archive_public, "archive-pass")
    store_dir = tmp_path / "store"
    headers = HeaderStore(store_dir.as_uri(), (tmp_path / "headers").as_uri())
    objects = {}
    for name, deliverable in FILES:
        plaintext = (genome / name).read_bytes()
        body = store_dir / "hovedstaden" / SAMPLE / name
        body.parent.mkdir(parents=True, exist_ok=True)
        encryptor = BodyEncryptor(archive_key.public)
        body.write_bytes(b"".join(encrypt_chunks(encryptor, [plaintext])))
        headers.write(body.as_uri(), encryptor.header)
        objects[name] = ArchivedObject(
            object_id(Region.HOVEDSTADEN, SAMPLE, name),
            Region.HOVEDSTADEN,
            SAMPLE,
            name,
            deliverable,
            len(plaintext),
            hashlib.sha256(plaintext).hexdigest(),
            body.as_uri(),
            RECEIVED,
        )
    store = AccessStore(f"sqlite:///{tmp_path / 'access.sqlite'}")
    store.project(KnownSample(Region.HOVEDSTADEN, SAMPLE, "NP-7", AnalysisType.WGS, RECEIVED, True), "e1")
    store.project_objects(list(objects.values()))
    department_secret, _ = write_key_pair(tmp_path / "ouh", "ouh-pass", DEPARTMENT)
    sent: list[Event] = []

    async def emit(event: Event, event_id: str) -> None:
        sent.append(event)

    tiers = ArchiveTiers(
        store_dir.as_uri(), (tmp_path / "warm").as_uri(), (tmp_path / "cold").as_uri(), delay=0
    )
    app = make_web([])
    delivery = Delivery(headers, lambda: archive_key, b"test-url-secret", 5, tiers)
    api = AccessApi(store, emit, 14, delivery=delivery)
    api.install(app, Tokens({token_hash(t): e for t, e in TOKENS.items()}))
    async with TestClient(TestServer(app)) as client:
        yield Slices(client, store, sent, genome, department_secret, objects, store_dir, tiers)
    store.dispose()


def _records(tool: list[str], path: Path, *region: str) -> list[str]:
    done = subprocess.run([*tool, str(path), *region], capture_output=True, text=True, check=True)
    return done.stdout.splitlines()


def reads(path: Path, *region: str) -> list[str]:
    return _records(["samtools", "view", "-T", str(synthetic_fasta())], path, *region)


def variants(path: Path, *region: str) -> list[str]:
    return _records(["bcftools", "view", "-H"], path, *(["-t", *region] if region else []))


async def test_a_cram_slice_holds_every_read_of_its_range_and_little_else(
    slices: Slices, tmp_path: Path
) -> None:
    request_id = await slices.granted()
    status, ticket = await slices.call(
        f"/ga4gh/htsget/v1/reads/{slices.id_of('RH-1.cram')}?referenceName=chr1&start=250000&end=300000"
    )
    assert status == 200 and ticket["htsget"]["format"] == "CRAM", ticket
    cut = tmp_path / "slice.cram"
    cut.write_bytes(await slices.fetched(ticket))
    whole = slices.genome / "RH-1.cram"
    assert cut.stat().st_size < whole.stat().st_size / 3  # one container of six, and the header
    subprocess.run(["samtools", "index", str(cut)], check=True)  # a CRAM samtools reads and indexes
    in_range = reads(whole, "chr1:250001-300000")
    assert len(in_range) > 1000 and reads(cut, "chr1:250001-300000") == in_range
    assert {r.split("\t")[2] for r in reads(cut)} == {"chr1"}

    (event,) = [e for e in slices.sent if isinstance(e, WorkingCopyIssued)]
    assert event.part == "slice" and event.complete and event.request_id == request_id
    (entry,) = [e for e in slices.store.entries(Region.HOVEDSTADEN) if e.action == "delivery"]
    assert entry.detail["range"] == {"reference_name": "chr1", "start": 250000, "end": 300000}
    assert entry.detail["sha256"] == event.sha256


async def test_the_htsget_client_fetches_a_vcf_slice_bcftools_reads(slices: Slices, tmp_path: Path) -> None:
    await slices.granted()
    base = str(slices.client.make_url("/ga4gh/htsget/v1/variants/")) + slices.id_of("RH-1.vcf.gz")
    fetched = tmp_path / "slice.vcf.gz.c4gh"
    with fetched.open("wb") as output:
        await asyncio.to_thread(
            htsget.get,
            base,
            output,
            reference_name="chr2",
            start=100_000,
            end=150_000,
            data_format="VCF",
            bearer_token="ouh-clinician",
        )
    cut = tmp_path / "slice.vcf.gz"
    cut.write_bytes(
        await asyncio.to_thread(crypt4gh_decrypt, fetched.read_bytes(), slices.secret_key, "ouh-pass")
    )
    in_range = variants(slices.genome / "RH-1.vcf.gz", "chr2:100001-150000")
    assert len(in_range) > 1000 and variants(cut, "chr2:100001-150000") == in_range
    # and little else: tabix indexes 16 kb windows, so a slice starts and ends at most one off
    positions = [int(line.split("\t")[1]) for line in variants(cut)]
    assert {line.split("\t")[0] for line in variants(cut)} == {"chr2"}
    assert min(positions) >= 100_000 - (1 << 14) and max(positions) <= 150_000 + (1 << 14)
    subprocess.run(["tabix", "-p", "vcf", str(cut)], check=True)  # valid BGZF, sorted: it indexes


async def test_the_header_alone_and_the_whole_file(slices: Slices, tmp_path: Path) -> None:
    await slices.granted()
    cram = slices.id_of("RH-1.cram")
    status, ticket = await slices.call(f"/ga4gh/htsget/v1/reads/{cram}?class=header&referenceName=chr1")
    assert status == 200 and ticket["htsget"]["urls"][0]["class"] == "header"
    header = tmp_path / "header.cram"
    header.write_bytes(await slices.fetched(ticket))
    assert reads(header) == []
    shown = subprocess.run(["samtools", "view", "-H", str(header)], capture_output=True, text=True).stdout
    assert "@SQ\tSN:chr1\tLN:600000" in shown and f"SM:{SAMPLE}" in shown
    status, ticket = await slices.call(f"/ga4gh/htsget/v1/variants/{slices.id_of('RH-1.vcf.gz')}")
    assert status == 200
    assert await slices.fetched(ticket) == (slices.genome / "RH-1.vcf.gz").read_bytes()


@pytest.mark.parametrize(
    ("query", "token", "status", "error"),
    [
        ("reads/{cram}?format=BAM", "ouh-clinician", 400, "UnsupportedFormat"),
        ("reads/{cram}?start=10", "ouh-clinician", 400, "InvalidInput"),
        ("reads/{cram}?referenceName=chr1&start=500&end=100", "ouh-clinician", 400, "InvalidRange"),
        ("reads/{cram}?referenceName=chr1&start=700000", "ouh-clinician", 400, "InvalidRange"),
        ("reads/{cram}?referenceName=chr9", "ouh-clinician", 404, "NotFound"),
        ("reads/{cram}?referenceName=chr1&fields=QNAME", "ouh-clinician", 400, "InvalidInput"),
        ("reads/{vcf}", "ouh-clinician", 404, "NotFound"),
        ("variants/{vcf}?referenceName=*", "ouh-clinician", 400, "InvalidInput"),
        ("reads/{missing}", "ouh-clinician", 404, "NotFound"),
        ("reads/{cram}?referenceName=chr1", "aau-clinician", 403, "PermissionDenied"),
        ("reads/{cram}?referenceName=chr1", "rh-steward", 403, "PermissionDenied"),
        ("reads/{cram}?referenceName=chr1", None, 401, "InvalidAuthentication"),
    ],
)
async def test_refusals_are_htsget_errors(
    slices: Slices, query: str, token: str | None, status: int, error: str
) -> None:
    await slices.granted()
    path = query.format(cram=slices.id_of("RH-1.cram"), vcf=slices.id_of("RH-1.vcf.gz"), missing="0" * 32)
    got, body = await slices.call(f"/ga4gh/htsget/v1/{path}", token)
    assert (got, body["htsget"]["error"]) == (status, error), body
    assert body["status"] == status and body["htsget"]["message"] == body["error"]
    assert not [e for e in slices.sent if isinstance(e, WorkingCopyIssued)]


async def test_a_grant_for_a_range_opens_slices_within_it_only(slices: Slices) -> None:
    await slices.granted(genomic_ranges=[{"reference_name": "chr1", "start": 100_000, "end": 200_000}])
    reads_of = f"/ga4gh/htsget/v1/reads/{slices.id_of('RH-1.cram')}"
    assert (await slices.call(f"{reads_of}?referenceName=chr1&start=120000&end=180000"))[0] == 200
    assert (await slices.call(f"{reads_of}?class=header"))[0] == 200
    for outside in ("?referenceName=chr1&start=150000&end=250000", "?referenceName=chr2", ""):
        status, body = await slices.call(reads_of + outside)
        assert (status, body["htsget"]["error"]) == (403, "PermissionDenied"), outside
    refused = [e for e in slices.store.entries(Region.HOVEDSTADEN) if e.action == "refused"]
    assert len(refused) == 3 and {e.detail["reason"] for e in refused} == {
        "the grant does not cover that range"
    }


async def test_a_slice_of_a_file_on_tape_answers_202_until_it_is_staged(
    slices: Slices, tmp_path: Path
) -> None:
    await slices.granted()
    path = f"hovedstaden/{SAMPLE}/RH-1.cram"
    cold = slices.tiers.cold_tier()
    with (slices.store_dir / path).open("rb") as stream:
        cold.store(path, stream)
    (slices.store_dir / path).unlink()  # cooled to tape, as the archive's mover leaves it
    ticket_of = f"/ga4gh/htsget/v1/reads/{slices.id_of('RH-1.cram')}?referenceName=chr2&start=1000&end=2000"
    status, waiting = await slices.call(ticket_of)
    assert status == 202 and waiting["state"] == "SUBMITTED", waiting
    (asked,) = [e for e in slices.sent if isinstance(e, RecallRequested)]
    assert asked.paths == [path] and asked.recall_id == waiting["recall_id"]

    cold.recall(path, pin_seconds=3600)  # the gateway stages it (this folder tape has no delay)
    staged = datetime.now(UTC)
    slices.store.project_recall(
        KnownRecall(path, asked.recall_id, "COMPLETED", None, staged + timedelta(hours=1), staged)
    )
    status, ticket = await slices.call(ticket_of)
    assert status == 200, ticket
    cut = tmp_path / "staged.cram"
    cut.write_bytes(await slices.fetched(ticket))
    subprocess.run(["samtools", "index", str(cut)], check=True)
    assert reads(cut, "chr2:1001-2000") == reads(slices.genome / "RH-1.cram", "chr2:1001-2000")


async def test_a_revoked_grant_opens_no_ticket_and_no_url_handed_out_before(slices: Slices) -> None:
    request_id = await slices.granted()
    status, ticket = await slices.call(
        f"/ga4gh/htsget/v1/variants/{slices.id_of('RH-1.vcf.gz')}?referenceName=chr1"
    )
    assert status == 200
    revoked = {"reason": "wrong patient"}
    assert (await slices.call(f"/v1/access/requests/{request_id}/revocation", "rh-steward", revoked))[
        0
    ] == 201
    url = ticket["htsget"]["urls"][0]["url"]
    response = await slices.client.get(url[url.index("/v1/working-copies/") :])
    assert response.status == 403
    status, body = await slices.call(
        f"/ga4gh/htsget/v1/variants/{slices.id_of('RH-1.vcf.gz')}?referenceName=chr1"
    )
    assert (status, body["htsget"]["error"]) == (403, "PermissionDenied")
    assert not [e for e in slices.sent if isinstance(e, WorkingCopyIssued)]


async def test_genomhub_fetch_range_gives_a_slice_samtools_reads(slices: Slices, tmp_path: Path) -> None:
    await slices.granted()
    uri = f"drs://127.0.0.1:{slices.client.server.port}/{slices.id_of('RH-1.cram')}"
    out = tmp_path / "slice.cram"
    keys = slices.secret_key.parent
    arguments = [uri, "-o", str(out), "--secret-key", str(keys / "archive.sec")]
    arguments += ["--public-key", str(keys / "archive.pub"), "--range", "chr2:100000-120000"]
    env = {"GENOMHUB_ACCESS_TOKEN": "ouh-clinician", "C4GH_PASSPHRASE": "ouh-pass"}
    fetched = await asyncio.to_thread(CliRunner().invoke, fetch, arguments, env=env)
    assert fetched.exit_code == 0, fetched.output
    assert f"slice chr2:100000-120000 of RH-1.cram, {out.stat().st_size} bytes" in fetched.output
    subprocess.run(["samtools", "index", str(out)], check=True)
    assert reads(out, "chr2:100001-120000") == reads(slices.genome / "RH-1.cram", "chr2:100001-120000")
    wrong = await asyncio.to_thread(CliRunner().invoke, fetch, [*arguments[:-1], "chr2:100000"], env=env)
    assert wrong.exit_code == 2 and "not a genomic range" in wrong.output
