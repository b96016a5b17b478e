"""What the local stack knows that a pod does not: where its broker is and which reference it
uses.

A pod is told everything by its environment (``GENOMHUB_KAFKA_BOOTSTRAP``,
``GENOMHUB_REFERENCE_FASTA`` from its ConfigMap) and stops when a setting is missing. The
local stack is the one that decides these for the processes it starts: its own broker's
address, and the synthetic reference built into the cache, which it hands over in their
environment exactly as Kubernetes would.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field

from shared.config import KafkaSettings, Section, StateSettings, TopicSettings
from shared.encryption import SECRET_KEY_FILE, write_key_pair
from shared.feed import HUB_SECRET_KEY_FILE, write_hub_key_pair
from shared.synthetic import synthetic_reference


class ReplicaSettings(Section):
    replicas: int = Field(
        default=1,
        ge=1,
        description="Local stack (`genomhub up`, the demo): processes of each service, each on a port of "
        "its own behind a round-robin balancer on the service's port, as a Kubernetes Service is.",
    )


LOCAL_PASSPHRASE_FILE = "passphrase"
"""Beside a local stack's archive and hub keys: the passphrase it made for them (a local stack only)."""

LOCAL_STACK_PARTS: tuple[type[Section], ...] = (ReplicaSettings,)
"""The settings only the local stack reads (documented in the README's table beside the rest)."""


@dataclass(frozen=True)
class StackSettings:
    """The local stack's own settings: its state folder and cache, the topics' partitions,
    and a broker to use instead of starting its own (``None``: start one)."""

    state: StateSettings = field(default_factory=StateSettings)
    bootstrap: str | None = None
    topics: TopicSettings = field(default_factory=TopicSettings)
    replicas: int = 1

    @classmethod
    def from_environment(cls) -> StackSettings:
        """As ``genomhub up`` reads them: a broker named by ``GENOMHUB_KAFKA_BOOTSTRAP`` is used."""
        return cls(StateSettings(), KafkaSettings().bootstrap, TopicSettings(), ReplicaSettings().replicas)

    @classmethod
    def fresh(cls, home: Path, cache: Path) -> StackSettings:
        """A stack of its own under ``home`` (the demo, the end-to-end tests), whatever broker
        the environment names."""
        return cls(StateSettings(home=home, cache=cache), replicas=ReplicaSettings().replicas)

    @property
    def state_dir(self) -> Path:
        return self.state.state_dir

    @property
    def cache(self) -> Path:
        return self.state.cache

    def reference(self) -> Path:
        """The synthetic reference (with .fai), built into the cache once: the embedded
        stack's reference genome, which its samples are simulated from."""
        return synthetic_reference(self.cache)

    def process_environment(self, bootstrap: str) -> dict[str, str]:
        """The environment of a process the stack starts: this one's, with the stack's broker,
        state folder, reference (a reference already configured is kept), archive key and hub key."""
        env = {**os.environ, "GENOMHUB_KAFKA_BOOTSTRAP": bootstrap, "GENOMHUB_HOME": str(self.state_dir)}
        env.setdefault("GENOMHUB_REFERENCE_FASTA", str(self.reference()))
        env.update(self.archive_key(env))
        env.update(self.hub_key(env))
        return env

    def archive_key(self, env: Mapping[str, str]) -> dict[str, str]:
        """The local stack's archive key, made under ``<home>/keys`` on its first start, and
        what its processes then need in their environment to unlock it.

        In production the key comes from a Secret and its passphrase from the environment,
        and a service without them does not start; a local stack has neither until it makes
        them, so it makes both once: the passphrase (unless the environment sets one) is
        kept beside the key, readable only by its owner, since a local stack's archive is
        only as secret as its state folder. A key configured elsewhere
        (``GENOMHUB_ARCHIVE_SECRET_KEY``) is used as it is.
        """
        if env.get("GENOMHUB_ARCHIVE_SECRET_KEY"):
            return {}
        keys = self.state_dir / "keys"
        passphrase, added = self._passphrase(env, "GENOMHUB_ARCHIVE_KEY_PASSPHRASE", keys / SECRET_KEY_FILE)
        if not (keys / SECRET_KEY_FILE).exists():
            write_key_pair(keys, passphrase, "genomhub local stack archive key")
        return added

    def hub_key(self, env: Mapping[str, str]) -> dict[str, str]:
        """The local stack's hub signing key (the spokes' feeds), made as the archive key is,
        under the same kept passphrase; one configured elsewhere (``GENOMHUB_HUB_SECRET_KEY``)
        is used as it is."""
        if env.get("GENOMHUB_HUB_SECRET_KEY"):
            return {}
        keys = self.state_dir / "keys"
        passphrase, added = self._passphrase(env, "GENOMHUB_HUB_KEY_PASSPHRASE", keys / HUB_SECRET_KEY_FILE)
        if not (keys / HUB_SECRET_KEY_FILE).exists():
            write_hub_key_pair(keys, passphrase)
        return added

    def _passphrase(self, env: Mapping[str, str], variable: str, key: Path) -> tuple[str, dict[str, str]]:
        """``variable``'s passphrase from the environment, else the one kept beside the keys
        (made on first use): and what the processes need to be given of it."""
        if env.get(variable):
            return env[variable], {}
        kept = key.parent / LOCAL_PASSPHRASE_FILE
        if not kept.exists() and key.exists():
            raise RuntimeError(f"{key.parent} holds {key.name} but not its passphrase: set {variable}")
        if not kept.exists():
            key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            descriptor = os.open(kept, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as out:
                out.write(secrets.token_urlsafe(32))
        passphrase = kept.read_text().strip()
        return passphrase, {variable: passphrase}
