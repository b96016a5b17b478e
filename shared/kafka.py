"""The one place genomhub makes Kafka clients, so that none reaches the broker without
its principal's credentials.

Every admin client, consumer and producer is built from a :class:`KafkaAccess`:
the broker's address, the principal (a service, ``operator``, ``finance`` or ``admin``:
:data:`shared.topics.CLIENT_PRINCIPALS`), its SCRAM-SHA-512 credentials and the transport.
The broker decides what each principal may do (:func:`shared.topics.grants_of`); a client
built here only proves who it is.

Where the credentials come from: ``GENOMHUB_KAFKA_USERNAME`` and ``GENOMHUB_KAFKA_PASSWORD``
when set (a Kubernetes pod gets its KafkaUser's from the Secret Strimzi makes); otherwise the
file the local broker wrote for the principal at format time, under
``<GENOMHUB_HOME>/kafka/credentials``. The transport is TLS (``SASL_SSL``) unless the broker
is on loopback, the embedded stack's only case for ``SASL_PLAINTEXT``.

    access = kafka_access("validator")
    producer = access.producer(acks="all")
"""

from __future__ import annotations

import ipaddress
import json
import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import AIOKafkaClient
from aiokafka.helpers import create_ssl_context

from shared.config import KafkaSettings, StateSettings
from shared.topics import CLIENT_PRINCIPALS, kafka_user

SASL_MECHANISM = "SCRAM-SHA-512"
CREDENTIALS_DIR = "credentials"


class KafkaAccessError(RuntimeError):
    """A client cannot be built: no credentials for the principal, or an unsafe transport."""


@dataclass(frozen=True)
class Credentials:
    """A Kafka user and its password; the password never shows in a repr or a log."""

    username: str
    password: str = field(repr=False)


def credentials_dir(state_dir: Path) -> Path:
    """Where the local broker keeps each principal's credentials (0700, files 0600)."""
    return state_dir / "kafka" / CREDENTIALS_DIR


def write_credentials(directory: Path, principal: str, credentials: Credentials) -> Path:
    """Store ``principal``'s credentials readable by this user only, atomically."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    path = directory / f"{principal}.json"
    partial = path.with_suffix(".json.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"username": credentials.username, "password": credentials.password}, out)
    os.replace(partial, path)
    return path


def read_credentials(directory: Path, principal: str) -> Credentials | None:
    """``principal``'s stored credentials; refused if others than this user may read them
    (as ssh refuses a private key), since then they prove nothing about who connects."""
    path = directory / f"{principal}.json"
    if not path.exists():
        return None
    if path.stat().st_mode & 0o077:
        raise KafkaAccessError(f"{path} is readable by other users: `chmod 600 {path}`, or start afresh")
    data = json.loads(path.read_text())
    return Credentials(str(data["username"]), str(data["password"]))


def bootstrap_hosts(bootstrap: str) -> list[str]:
    """The host of each ``host:port`` in a bootstrap list (IPv6 in brackets allowed)."""
    hosts = []
    for server in filter(None, (s.strip() for s in bootstrap.split(","))):
        host = server.rsplit(":", 1)[0] if ":" in server else server
        hosts.append(host.strip("[]"))
    return hosts


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class KafkaAccess:
    """How one principal reaches the broker; every client genomhub uses is made here.

    ``credentials`` None with ``security_protocol`` PLAINTEXT is an anonymous client: only
    the tests build one, to show that the broker refuses it.
    """

    bootstrap: str
    principal: str
    credentials: Credentials | None
    security_protocol: str = "SASL_PLAINTEXT"
    ca_file: Path | None = None

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.security_protocol.endswith("SSL"):
            return None
        context: ssl.SSLContext = create_ssl_context(cafile=str(self.ca_file) if self.ca_file else None)
        return context

    def client_options(self) -> dict[str, Any]:
        """The security keyword arguments every aiokafka client takes."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": self.security_protocol,
            "client_id": kafka_user(self.principal),
        }
        if self.credentials is not None:
            options |= {
                "sasl_mechanism": SASL_MECHANISM,
                "sasl_plain_username": self.credentials.username,
                "sasl_plain_password": self.credentials.password,
            }
        if (context := self.ssl_context()) is not None:
            options["ssl_context"] = context
        return options

    def admin(self, **options: Any) -> AIOKafkaAdminClient:
        return AIOKafkaAdminClient(**self.client_options(), **options)

    def consumer(self, *topics: str, **options: Any) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(*topics, **self.client_options(), **options)

    def producer(self, **options: Any) -> AIOKafkaProducer:
        return AIOKafkaProducer(**self.client_options(), **options)

    def client(self, **options: Any) -> AIOKafkaClient:
        """The low-level client, for requests the admin client has no method for (ACLs)."""
        return AIOKafkaClient(**self.client_options(), **options)


def kafka_access(
    principal: str, settings: KafkaSettings | None = None, state: StateSettings | None = None
) -> KafkaAccess:
    """How ``principal`` reaches the configured broker, with its own credentials.

    ``settings`` and ``state`` are read from the environment when not given (a command's
    wiring). Refuses a principal the registry does not know, no broker, a missing password,
    and plain transport to a broker that is not on loopback.
    """
    settings = settings or KafkaSettings()
    if principal not in CLIENT_PRINCIPALS:
        raise KafkaAccessError(
            f"unknown Kafka principal {principal!r}; known: {', '.join(CLIENT_PRINCIPALS)}"
        )
    bootstrap = settings.bootstrap_servers()
    protocol = settings.security_protocol
    if protocol == "SASL_PLAINTEXT":
        remote = [h for h in bootstrap_hosts(bootstrap) if not is_loopback(h)]
        if remote:
            raise KafkaAccessError(
                f"refusing SASL_PLAINTEXT to {', '.join(remote)}: credentials and events would travel in "
                "the clear; set GENOMHUB_KAFKA_SECURITY_PROTOCOL=SASL_SSL (plain only on loopback)"
            )
    if settings.username:
        if settings.password is None:
            raise KafkaAccessError("GENOMHUB_KAFKA_USERNAME is set but GENOMHUB_KAFKA_PASSWORD is not")
        credentials = Credentials(settings.username, settings.password.get_secret_value())
    else:
        directory = credentials_dir((state or StateSettings()).state_dir)
        found = read_credentials(directory, principal)
        if found is None:
            raise KafkaAccessError(
                f"no Kafka credentials for {principal}: set GENOMHUB_KAFKA_USERNAME and "
                f"GENOMHUB_KAFKA_PASSWORD, or start the local broker (`genomhub kafka start`), "
                f"which writes them to {directory}"
            )
        credentials = found
    return KafkaAccess(bootstrap, principal, credentials, protocol, settings.ca_file)
