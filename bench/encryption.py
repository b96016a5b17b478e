"""Cost of Crypt4GH encryption at rest, next to ``openssl enc -chacha20`` and ``md5sum``.

    .venv/bin/python bench/encryption.py [--size-gb 2] [--keep-file]

On one random file (the upload benchmark's, cached outside git under GENOMHUB_CACHE/bench),
read from the page cache, in one run:

- ``md5sum`` of the file: the baseline, the intake's floor (md5 is the slower of the
  receiver's two digests, so encryption must cost less than it to keep the intake at its pace);
- ``openssl enc -chacha20`` of the file (Debian's OpenSSL, the stream cipher without
  Poly1305): what the cipher costs outside Python;
- the segment cipher alone, 64 KiB segments with their nonce and Poly1305 tag, through the
  ``cryptography`` package (what ``shared.encryption`` uses) and through the ``crypt4gh``
  package's own libsodium call (what it would cost to use the package's);
- ``shared.encryption.BodyEncryptor`` streaming the file in the receiver's chunks (4 MiB):
  to /dev/null beside a plain copy to /dev/null (its own cost, free of the disk's noise),
  then to an encrypted body on disk, and ``BodyDecryptor`` reading that back through md5
  (which must equal md5sum's), each in a process of its own so that its peak RSS is its own.

Figures are MB/s and CPU seconds per GB with their ratios to md5sum. The machine is shared:
read the ratios and the CPU per GB, not the absolute rates.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from crypt4gh import sodium  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305  # noqa: E402
from upload import md5sum, test_file  # noqa: E402  (bench/upload.py: the same cached file and baseline)

from shared.encryption import (  # noqa: E402
    CIPHER_SEGMENT_SIZE,
    NONCE_SIZE,
    SEGMENT_SIZE,
    BodyDecryptor,
    BodyEncryptor,
    load_archive_key,
    write_key_pair,
)
from shared.storage import CHUNK  # noqa: E402

PASSPHRASE = "bench"


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _child_cpu(command: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of a command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def openssl_chacha20(path: Path) -> tuple[float, float]:
    key, iv = os.urandom(32).hex(), os.urandom(16).hex()
    return _child_cpu(
        ["openssl", "enc", "-chacha20", "-K", key, "-iv", iv, "-in", str(path), "-out", os.devnull]
    )


def segment_cipher(path: Path, seal: Callable[[memoryview, bytearray], None]) -> tuple[float, float]:
    """Wall and CPU seconds to seal every 64 KiB segment of the file (read included)."""
    plaintext, sealed = bytearray(SEGMENT_SIZE), bytearray(CIPHER_SEGMENT_SIZE)
    view = memoryview(plaintext)
    started, cpu = time.perf_counter(), _cpu_self()
    with path.open("rb", buffering=0) as handle:
        while count := handle.readinto(plaintext):
            seal(view[:count], sealed)
    return time.perf_counter() - started, _cpu_self() - cpu


def cryptography_seal(key: bytes) -> Callable[[memoryview, bytearray], None]:
    cipher = ChaCha20Poly1305(key)

    def seal(segment: memoryview, out: bytearray) -> None:
        nonce = os.urandom(NONCE_SIZE)
        out[:NONCE_SIZE] = nonce
        cipher.encrypt_into(
            nonce, segment, None, memoryview(out)[NONCE_SIZE : NONCE_SIZE + len(segment) + 16]
        )

    return seal


def libsodium_seal(key: bytes) -> Callable[[memoryview, bytearray], None]:
    def seal(segment: memoryview, out: bytearray) -> None:
        sodium.chacha20poly1305_encrypt(out, segment, key)

    return seal


def _max_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def stream_copy(plain: Path, copy: Path) -> dict[str, float]:
    """The child's side of the plain copy: the same reads and writes with no cipher, so the
    encryptor's own cost is the difference."""
    idle = _max_rss()
    started, cpu = time.perf_counter(), _cpu_self()
    with plain.open("rb") as source, copy.open("wb") as sink:
        while chunk := source.read(CHUNK):
            sink.write(chunk)
    return {"wall": time.perf_counter() - started, "cpu": _cpu_self() - cpu, "idle_rss": idle}


def stream_encrypt(plain: Path, keys: Path, body: Path) -> dict[str, float]:
    """The child's side: the file through BodyEncryptor in the receiver's chunk size."""
    key = load_archive_key(keys / "archive.sec", keys / "archive.pub", PASSPHRASE)
    idle = _max_rss()
    started, cpu = time.perf_counter(), _cpu_self()
    encryptor = BodyEncryptor(key.public)
    with plain.open("rb") as source, body.open("wb") as sink:
        while chunk := source.read(CHUNK):
            for segment in encryptor.feed(chunk):
                sink.write(segment)
        for segment in encryptor.finish():
            sink.write(segment)
    (keys / "header").write_bytes(encryptor.header)
    return {"wall": time.perf_counter() - started, "cpu": _cpu_self() - cpu, "idle_rss": idle}


def stream_decrypt(size: int, keys: Path, body: Path) -> dict[str, float | str]:
    """The child's side: the body through BodyDecryptor, its plaintext through md5."""
    key = load_archive_key(keys / "archive.sec", keys / "archive.pub", PASSPHRASE)
    digest = hashlib.md5()
    idle = _max_rss()
    started, cpu = time.perf_counter(), _cpu_self()
    with body.open("rb") as source:
        reader = BodyDecryptor((keys / "header").read_bytes(), source, key, size)
        buffer = bytearray(CHUNK)
        while count := reader.readinto(buffer):
            digest.update(memoryview(buffer)[:count])
    wall, used = time.perf_counter() - started, _cpu_self() - cpu
    return {"wall": wall, "cpu": used, "idle_rss": idle, "md5": digest.hexdigest()}


def in_child(*args: str) -> dict[str, float | str]:
    """One streaming side in a fresh interpreter; its figures and its own peak RSS."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args], check=True, capture_output=True, text=True
    ).stdout
    result: dict[str, float | str] = json.loads(out)
    return result


def child(mode: str, args: list[str]) -> None:
    result: dict[str, float | str]
    if mode == "copy":
        result = dict(stream_copy(Path(args[0]), Path(args[1])))
    elif mode == "encrypt":
        result = dict(stream_encrypt(Path(args[0]), Path(args[1]), Path(args[2])))
    else:
        result = dict(stream_decrypt(int(args[0]), Path(args[1]), Path(args[2])))
    result["max_rss"] = _max_rss()
    print(json.dumps(result))


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3:])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-gb", type=float, default=2.0)
    parser.add_argument("--keep-file", action="store_true", help="keep the generated file in the cache")
    args = parser.parse_args()
    size = int(args.size_gb * 1e9)
    data = test_file(size)
    gb, mb = size / 1e9, size / 1e6
    try:
        with tempfile.TemporaryDirectory(prefix="genomhub-bench-encryption-") as work:
            keys, body = Path(work) / "keys", Path(work) / "body.c4gh"
            write_key_pair(keys, PASSPHRASE)
            md5sum(data)  # warm the page cache: every side reads the file from memory
            md5_s, md5_cpu, md5_hex = md5sum(data)
            openssl_s, openssl_cpu = openssl_chacha20(data)
            data_key = os.urandom(32)
            ours_s, ours_cpu = segment_cipher(data, cryptography_seal(data_key))
            sodium_s, sodium_cpu = segment_cipher(data, libsodium_seal(data_key))
            # to /dev/null, the encryptor's own cost beside a plain copy, free of the disk's noise
            copied = in_child("copy", str(data), os.devnull)
            sealed = in_child("encrypt", str(data), str(keys), os.devnull)
            encrypted = in_child("encrypt", str(data), str(keys), str(body))
            decrypted = in_child("decrypt", str(size), str(keys), str(body))
            body_size = body.stat().st_size

        md5_rate = mb / md5_s
        print(f"file: {gb:.2f} GB ({data}), {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
        print(f"{'':44} {'MB/s':>6} {'CPU s/GB':>9} {'x md5sum rate':>14}")

        def row(name: str, wall: float, cpu: float, note: str = "") -> None:
            print(f"{name:44} {mb / wall:6.0f} {cpu / gb:9.2f} {mb / wall / md5_rate:14.2f}  {note}")

        row("md5sum (baseline, the intake's floor)", md5_s, md5_cpu)
        row("openssl enc -chacha20 (no Poly1305)", openssl_s, openssl_cpu)
        row("segments: cryptography ChaCha20-Poly1305", ours_s, ours_cpu, "<- shared.encryption")
        row("segments: crypt4gh's libsodium call", sodium_s, sodium_cpu)
        enc_wall, enc_cpu = float(encrypted["wall"]), float(encrypted["cpu"])
        dec_wall, dec_cpu = float(decrypted["wall"]), float(decrypted["cpu"])
        copy_wall, copy_cpu = float(copied["wall"]), float(copied["cpu"])
        sealed_wall, sealed_cpu = float(sealed["wall"]), float(sealed["cpu"])
        row("plain copy, file -> /dev/null", copy_wall, copy_cpu, "read + write, no cipher")
        row("BodyEncryptor, file -> /dev/null", sealed_wall, sealed_cpu, "read + seal + write")
        row("BodyEncryptor, file -> body on disk", enc_wall, enc_cpu, "read + seal + write to disk")
        row("BodyDecryptor, body on disk -> md5", dec_wall, dec_cpu, "read + verify + md5")
        print(
            f"cipher CPU per GB against md5sum's: cryptography {ours_cpu / md5_cpu:.2f}x, "
            f"libsodium {sodium_cpu / md5_cpu:.2f}x, openssl enc {openssl_cpu / md5_cpu:.2f}x"
        )
        print(
            f"the encryptor's own CPU per GB over the plain copy: {(sealed_cpu - copy_cpu) / gb:.2f} s "
            f"({(sealed_cpu - copy_cpu) / md5_cpu:.2f}x md5sum's)"
        )
        for name, figures in (("plain copy", copied), ("encryptor", encrypted), ("decryptor", decrypted)):
            print(
                f"RSS streaming {gb:.2f} GB, {name}: {float(figures['idle_rss']) / 1e6:.0f} MB before "
                f"(interpreter and imports), peak {float(figures['max_rss']) / 1e6:.0f} MB"
            )
        print(f"body {body_size} bytes = plaintext + {body_size - size} (28 per 64 KiB segment)")
        print(f"decrypted md5 equals md5sum's: {decrypted['md5'] == md5_hex}")
        if decrypted["md5"] != md5_hex:
            raise SystemExit("the decrypted body differs from the file")
    finally:
        if not args.keep_file:
            data.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
