"""``genomhub keys``: making and checking NGC's archive key (Crypt4GH, X25519), and the hub's
signing key (Ed25519) that the spokes' feeds are signed with (``shared.feed``).

The mechanism is ``shared.encryption``; these commands only give it to operators: a new key
pair in Crypt4GH's key format (which ``crypt4gh`` and ``crypt4gh-keygen`` read as their own),
and the services' start-up check run on its own, so a Secret can be checked before a rollout.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click
from pydantic import SecretStr

from shared.config import ArchiveKeySettings, HubKeySettings
from shared.encryption import ArchiveKeyError, check_archive_key, write_key_pair
from shared.feed import HubKeyError, hub_signing_key, key_id, write_hub_key_pair


@click.group("keys")
def keys() -> None:
    """NGC's archive key, that every archived file's header is encrypted to."""


def out_option(files: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    return click.option(
        "--out",
        "directory",
        required=True,
        type=click.Path(file_okay=False, path_type=Path),
        help=f"Folder for {files}; created if missing.",
    )


def written(
    write: Callable[[Path, str], tuple[Path, Path]],
    directory: Path,
    passphrase: SecretStr | None,
    variables: tuple[str, ...],
) -> None:
    """Write a key pair with ``write`` and print the variables that name its files."""
    try:
        secret, public = write(directory.resolve(), passphrase.get_secret_value() if passphrase else "")
    except (ArchiveKeyError, HubKeyError) as exc:
        raise click.ClickException(str(exc)) from exc
    for variable, path in zip(variables, (secret, public, public), strict=False):
        click.echo(f"{variable}={path}")


@keys.command("generate")
@out_option("archive.sec (the locked private key) and archive.pub")
def generate(directory: Path) -> None:
    """Write a new key pair, the private key locked with GENOMHUB_ARCHIVE_KEY_PASSPHRASE.

    Existing key files are never overwritten.
    """
    variables = ("GENOMHUB_ARCHIVE_SECRET_KEY", "GENOMHUB_ARCHIVE_PUBLIC_KEY")
    written(write_key_pair, directory, ArchiveKeySettings().key_passphrase, variables)


@keys.command("check")
def check() -> None:
    """Load the configured archive key as a service does at start; exit 1 with the reason if it
    cannot be used (missing, not Crypt4GH, wrong passphrase, halves of different pairs)."""
    try:
        key = check_archive_key(ArchiveKeySettings())
    except ArchiveKeyError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"archive key {key.fingerprint}: unlocks, and its public half matches")


@keys.command("generate-hub")
@out_option("hub.sec (the locked private key) and hub.pub (what spokes pin)")
def generate_hub(directory: Path) -> None:
    """Write a new hub signing key, the private key locked with GENOMHUB_HUB_KEY_PASSPHRASE.

    Existing key files are never overwritten.
    """
    variables = ("GENOMHUB_HUB_SECRET_KEY", "GENOMHUB_HUB_PUBLIC_KEY", "GENOMHUB_SPOKE_HUB_PUBLIC_KEY")
    written(write_hub_key_pair, directory, HubKeySettings().key_passphrase, variables)


@keys.command("check-hub")
def check_hub() -> None:
    """Load the configured hub signing key as the publisher does at start; exit 1 with the
    reason if it cannot be used (missing, not Ed25519, wrong passphrase, halves of two pairs)."""
    try:
        secret = hub_signing_key(HubKeySettings())
    except HubKeyError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"hub key {key_id(secret.public_key())}: unlocks, and its public half matches")
