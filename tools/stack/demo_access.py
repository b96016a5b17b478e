"""The demo's data-out story (the minutes' initiative 5.2), on the running stack.

A clinician at Odense (Region Syddanmark) treats a patient whose genome Rigshospitalet
(Region Hovedstaden) reported in the demo's month: she asks whether the national database
holds data for the patient's pseudonym, requests a working copy, Hovedstaden's data steward
grants it, she fetches the harmonised CRAM (checked against DRS's sha-256) and one slice of
it through htsget; the sample then cools to tape, her next fetch is answered 202 while the
archive recalls it (its WLCG states shown) and delivers the same bytes once staged; the steward
revokes the grant, her next fetch is refused, and the ledger's chain verifies. Each step is the command the person in that role would run, with their own
token, so what the demo prints is what those commands print.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from shared.encryption import write_key_pair

DEPARTMENT = "OUH Klinisk Genetik"
"""The Odense department the clinician works in; working copies are encrypted to its key."""
PASSPHRASE = "demo-department-key"
CASE = "OUH-2026-DEMO-17"
SLICE = "chr1:100000-200000"
"""The slice the clinician fetches through htsget (0-based, end excluded, as htsget counts)."""
ROLES = {
    "syddanmark-clinician": ("syddanmark", "clinician"),
    "syddanmark-steward": ("syddanmark", "data-steward"),
    "hovedstaden-steward": ("hovedstaden", "data-steward"),
}
"""The tokens the story needs beside the regions' and NGC's: who holds each, and its role."""
GENOMHUB = str(Path(sys.executable).with_name("genomhub"))

Command = Callable[[list[str], Mapping[str, str]], str]


def _refused(args: list[str], env: Mapping[str, str]) -> str:
    """What a command that must be refused says; it is a failure of the demo if it is not."""
    done = subprocess.run([GENOMHUB, *args], env={**os.environ, **env}, capture_output=True, text=True)
    if done.returncode == 0:
        raise RuntimeError(f"genomhub {' '.join(args)} was not refused:\n{done.stdout}")
    return (done.stderr or done.stdout).strip().splitlines()[-1]


def _through_a_recall(
    sample: str,
    fetch: list[str],
    clinician: Mapping[str, str],
    national: Mapping[str, str],
    command: Command,
    say: Callable[[str], None],
    timeout: float = 300,
) -> None:
    """The sample cools to tape; the clinician's fetch is answered 202 (the DRS endpoint asks
    the archive for a recall), the recall goes through its WLCG states, and the same fetch
    then delivers the copy."""
    say(f"  {sample} cools to tape now (the operator's `genomhub archive cool`, as the lifecycle would):")
    for line in command(["archive", "cool", sample, "--to", "cold"], national).splitlines():
        say(f"    {line}")
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        done = subprocess.run([GENOMHUB, *fetch], env={**os.environ, **clinician}, capture_output=True, text=True)
        if done.returncode == 0:
            ended = [line for line in command(["archive", "status"], national).splitlines() if line.startswith("recall ")]
            say(f"    {ended[-1]}" if ended else "    (no recall left on record)")
            say("  " + done.stdout.strip())
            return
        if done.returncode != 3:
            raise RuntimeError(f"genomhub {' '.join(fetch)} failed:\n{done.stdout}{done.stderr}")
        if not seen:
            say(f"  the fetch: {(done.stderr or done.stdout).strip().splitlines()[-1]}")
        states = [line for line in command(["archive", "status"], national).splitlines() if line.startswith("recall ")]
        for state in states[-1:]:
            if state not in seen:
                seen.append(state)
                say(f"    {state}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the recall did not stage the copy within {timeout:g} s: {seen}")
        time.sleep(2)


def _cram_uri(command: Command, request_id: str, env: Mapping[str, str], timeout: float = 120) -> str:
    """The DRS URI of the granted CRAM, once the access service has its harmonised event."""
    deadline = time.monotonic() + timeout
    while True:
        for line in command(["access", "objects", request_id], env).splitlines():
            uri, _, fetchable, *_, name = line.split()
            if name.endswith(".cram") and fetchable == "fetchable":
                return uri
        if time.monotonic() > deadline:
            raise TimeoutError(f"the request's CRAM is not fetchable after {timeout:.0f} s")
        time.sleep(1.0)


def show_data_out(
    folder: Path,
    reference: Path,
    role_tokens: Mapping[str, str],
    national: Mapping[str, str],
    patient: str,
    sample: str,
    command: Command,
    say: Callable[[str], None],
) -> None:
    """Tell the story above; ``national`` is the operator's environment (ports, home);
    ``sample`` (``region/pseudonym``) is the patient's sample, which goes to tape midway."""
    say("\ndata out: a Syddanmark clinician, a Hovedstaden patient")
    folder.mkdir(parents=True, exist_ok=True)
    secret, public = write_key_pair(folder / "ouh-key", PASSPHRASE, DEPARTMENT)

    def acting(role: str) -> dict[str, str]:
        return {**national, "GENOMHUB_ACCESS_TOKEN": role_tokens[role], "C4GH_PASSPHRASE": PASSPHRASE}

    clinician = acting("syddanmark-clinician")
    steward, owner = acting("syddanmark-steward"), acting("hovedstaden-steward")
    register = ["access", "department-key", "register", "--region", "syddanmark", "--department", DEPARTMENT]
    command([*register, "--public-key", str(public)], steward)
    say(f"  Syddanmark's steward registered {DEPARTMENT}'s Crypt4GH key")
    answer = json.loads(command(["access", "discover", patient, "--case", CASE], clinician))
    say(f"  discovery of {patient} (case {CASE}): {json.dumps(answer, ensure_ascii=False)}")
    request = ["access", "request", "--owner", "hovedstaden", "--patient", patient]
    request += ["--department", DEPARTMENT, "--want", "harmonised-cram", "--want", "harmonised-vcf"]
    asked = json.loads(command([*request, "--case", CASE, "--urgency", "urgent"], clinician))
    request_id = asked["request"]["request_id"]
    say(f"  requested a working copy: {request_id} (access-requested)")
    decided = json.loads(command(["access", "decide", request_id, "--grant"], owner))
    say(f"  Hovedstaden's steward granted it until {decided['decision']['valid_until']} (access-decided)")

    uri = _cram_uri(command, request_id, clinician)
    keys = ["--secret-key", str(secret), "--public-key", str(public)]
    whole, piece = folder / "working-copy.cram", folder / "slice.cram"
    say("  " + command(["fetch", uri, "-o", str(whole), *keys], clinician).strip())
    say("  " + command(["fetch", uri, "-o", str(piece), *keys, "--range", SLICE], clinician).strip())
    name, span = SLICE.split(":")
    start, end = (int(n) for n in span.split("-"))
    region = f"{name}:{start + 1}-{end}"
    for cram in (piece, whole):
        subprocess.run(["samtools", "index", str(cram)], check=True)
    counts = [
        subprocess.run(
            ["samtools", "view", "-c", "-T", str(reference), str(cram), region],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for cram in (piece, whole)
    ]
    say(f"  samtools reads {counts[0]} reads of {region} in the slice, as in the whole copy ({counts[1]})")

    from_tape = folder / "from-tape.cram"
    _through_a_recall(sample, ["fetch", uri, "-o", str(from_tape), *keys], clinician, national, command, say)
    if from_tape.read_bytes() != whole.read_bytes():
        raise RuntimeError("the copy recalled from tape differs from the one fetched before")
    say("  the copy from tape is byte for byte the one fetched before")

    command(["access", "revoke", request_id, "--reason", "treatment completed"], owner)
    say("  Hovedstaden's steward revoked the grant (access-revoked)")
    again = ["fetch", uri, "-o", str(folder / "again.cram"), *keys]
    say(f"  a second fetch is refused: {_refused(again, clinician)}")
    say("  " + command(["audit", "verify"], national).strip())
