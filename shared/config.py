"""genomhub's settings: one section per service, composed from the shared parts.

Every knob is a ``GENOMHUB_*`` environment variable (documented in the README), so the same
code runs in the embedded demo, in the tests and in Kubernetes, where the variables come
from a ConfigMap and a Secret. A section is a pydantic-settings class whose ``env_prefix``
names its variables: a field ``max_uploads`` of :class:`ReceiverSettings` is
``GENOMHUB_RECEIVER_MAX_UPLOADS``. Adding a knob is one line in its section (and a row in
the README's table, which a unit test holds to the sections).

Only wiring reads settings: a service's ``app.py`` builds its section, the commands build
the parts they need, and the domain modules receive values as arguments. Nothing here knows
the local stack: the broker's address and the reference FASTA are whatever the environment
says (``tools/stack`` sets both for the processes it starts), and a missing one stops the
process with a message naming the variable.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.events import HarmonisationPolicy, Region
from shared.profiles import SYNTHETIC_NAME

RENAMED = {
    "GENOMHUB_RECEIVER_DB": "GENOMHUB_RECEIVER_DATABASE_URL",
    "GENOMHUB_CATALOGUE_URL": "GENOMHUB_INDEXER_DATABASE_URL",
    "GENOMHUB_BILLING_URL": "GENOMHUB_BILLING_DATABASE_URL",
    "GENOMHUB_SPRING_EXECUTABLE": "GENOMHUB_VALIDATOR_SPRING_EXECUTABLE",
}
"""Old variable -> the name it has now. An old name still set is refused rather than
ignored: a database URL silently dropped would put production state into a SQLite file."""


class SettingsError(RuntimeError):
    """The environment cannot configure this process; the message says which variable to set."""


def refuse_renamed(environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Stop on any renamed variable still set, naming the one to set instead."""
    found = sorted(old for old in RENAMED if old in environ)
    if found:
        raise SettingsError(
            "; ".join(f"{old} was renamed: set {RENAMED[old]} instead (and unset {old})" for old in found)
        )


class Section(BaseSettings):
    """A group of settings read from the environment under one ``env_prefix``. A field
    given by name that the section does not have is refused (``extra="forbid"``), so a
    misspelt override in code fails; variables of the environment it does not know are
    simply not its own."""

    model_config = SettingsConfigDict(env_prefix="GENOMHUB_", extra="forbid")

    def __init__(self, **values: Any) -> None:
        refuse_renamed()
        super().__init__(**values)


def part(section: type[Section]) -> Any:
    """A shared part inside a section, read from its own variables when the section is made."""
    return Field(default_factory=section)


# --- the shared parts -------------------------------------------------------------------


class StateSettings(Section):
    home: Path = Field(
        default=Path(".genomhub"),
        description="State folder of a local stack: broker data, job state, SQLite files.",
    )
    cache: Path = Field(
        default=Path.home() / ".cache" / "genomhub",
        description="Cache outside git for downloaded jars, built binaries and indexes.",
    )

    @property
    def state_dir(self) -> Path:
        return self.home.resolve()

    def sqlite(self, name: str) -> str:
        """The embedded default of a service's database: a SQLite file in the state folder."""
        return f"sqlite:///{self.state_dir / name}"


class KafkaSettings(Section):
    model_config = SettingsConfigDict(env_prefix="GENOMHUB_KAFKA_")

    bootstrap: str | None = Field(
        default=None,
        description="Kafka bootstrap servers; required (the local stack sets it for the processes it "
        "starts, and `genomhub kafka start` prints it).",
    )
    security_protocol: Literal["SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="SASL_PLAINTEXT",
        description="How clients reach Kafka, always with SCRAM-SHA-512: `SASL_SSL` (TLS) in "
        "Kubernetes; `SASL_PLAINTEXT` only to a broker on loopback (the local broker).",
    )
    username: str | None = Field(
        default=None,
        description="Kafka user of this process (the KafkaUser's name in Kubernetes). Unset: the "
        "process's own principal, with the password the local broker wrote under <home>/kafka/credentials.",
    )
    password: SecretStr | None = Field(
        default=None,
        description="Password of `GENOMHUB_KAFKA_USERNAME` (in Kubernetes from the Secret Strimzi makes).",
    )
    ca_file: Path | None = Field(
        default=None,
        description="CA bundle that verifies the brokers' TLS certificates under `SASL_SSL` (Strimzi's "
        "cluster CA). Unset: the system's CAs.",
    )

    def bootstrap_servers(self) -> str:
        """The broker to talk to; a process without one stops here rather than guessing."""
        if not self.bootstrap:
            raise SettingsError(
                "no Kafka broker configured: set GENOMHUB_KAFKA_BOOTSTRAP (on this machine "
                "`genomhub kafka start` prints the local broker's address)"
            )
        return self.bootstrap


class TopicSettings(Section):
    model_config = SettingsConfigDict(env_prefix="GENOMHUB_TOPIC_")

    partitions: int = Field(default=3, description="Partitions of each core topic.")
    replicas: int = Field(default=1, description="Replication factor of each topic.")


class HttpSettings(Section):
    model_config = SettingsConfigDict(env_prefix="GENOMHUB_HTTP_")

    host: str = Field(default="127.0.0.1", description="Interface the HTTP servers bind.")
    tls_cert: Path | None = Field(
        default=None,
        description="PEM certificate chain every HTTP server serves TLS with (with `GENOMHUB_HTTP_TLS_KEY`; "
        "in Kubernetes a mounted Secret). Unset: plain HTTP, for loopback and a TLS proxy in front.",
    )
    tls_key: Path | None = Field(default=None, description="PEM private key of `GENOMHUB_HTTP_TLS_CERT`.")
    head_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a connection has to deliver a whole request, head and body (from its "
        "opening, or from a kept-alive request's first byte); then it is closed. An upload's body has "
        "its own limits instead (`GENOMHUB_RECEIVER_IDLE_TIMEOUT`, `GENOMHUB_RECEIVER_MIN_RATE`).",
    )


class ArchiveKeySettings(Section):
    """NGC's archive key (Crypt4GH, X25519): every stored file's header is encrypted to it."""

    model_config = SettingsConfigDict(env_prefix="GENOMHUB_ARCHIVE_")

    secret_key: Path | None = Field(
        default=None,
        description="Crypt4GH private key file of NGC's archive key (from a Kubernetes Secret in "
        "production), locked with `GENOMHUB_ARCHIVE_KEY_PASSPHRASE`. Unset: <home>/keys/archive.sec.",
    )
    public_key: Path | None = Field(
        default=None,
        description="Crypt4GH public key file of the archive key, that every file's header is "
        "encrypted to. Unset: <home>/keys/archive.pub.",
    )
    key_passphrase: SecretStr | None = Field(
        default=None,
        description="Passphrase that unlocks the archive's private key (from a Secret; never logged).",
    )
    previous_secret_key: Path | None = Field(
        default=None,
        description="During a key rotation only: the retiring archive key's private key file, that "
        "readers also try on headers `genomhub archive rotate-key` has not rewritten yet. Unset "
        "once the rotation has finished.",
    )
    previous_key_passphrase: SecretStr | None = Field(
        default=None,
        description="Passphrase of `GENOMHUB_ARCHIVE_PREVIOUS_SECRET_KEY` (from a Secret; never "
        "logged). Unset: the same as `GENOMHUB_ARCHIVE_KEY_PASSPHRASE`.",
    )
    state: StateSettings = part(StateSettings)


class HubKeySettings(Section):
    """The hub's signing key (Ed25519): every entry of every spoke's feed is signed with it."""

    model_config = SettingsConfigDict(env_prefix="GENOMHUB_HUB_")

    secret_key: Path | None = Field(
        default=None,
        description="PEM private key (PKCS#8, locked with `GENOMHUB_HUB_KEY_PASSPHRASE`) that signs the "
        "spokes' feeds (from a Kubernetes Secret in production). Unset: <home>/keys/hub.sec.",
    )
    public_key: Path | None = Field(
        default=None,
        description="PEM public key of the hub's signing key, the one each spoke pins. Unset: "
        "<home>/keys/hub.pub.",
    )
    key_passphrase: SecretStr | None = Field(
        default=None,
        description="Passphrase that unlocks the hub's signing key (from a Secret; never logged).",
    )
    previous_secret_key: Path | None = Field(
        default=None,
        description="During a rollover only: the hub key that signs the feeds now. The publisher announces "
        "`GENOMHUB_HUB_SECRET_KEY`'s public half with it on every partition of every feed, then signs with "
        "the new key. Unset once the publisher has started with both.",
    )
    previous_key_passphrase: SecretStr | None = Field(
        default=None,
        description="Passphrase of `GENOMHUB_HUB_PREVIOUS_SECRET_KEY` (from a Secret; never logged). Unset: "
        "the same as `GENOMHUB_HUB_KEY_PASSPHRASE`.",
    )
    state: StateSettings = part(StateSettings)

    def secret_path(self) -> Path:
        return self.secret_key or self.state.state_dir / "keys" / "hub.sec"

    def public_path(self) -> Path:
        return self.public_key or self.state.state_dir / "keys" / "hub.pub"


class HubKafkaSettings(KafkaSettings):
    """A spoke's way to the hub's broker, where it acknowledges each revision it shows (its
    own broker, with its mirrored feed, is ``GENOMHUB_KAFKA_*``)."""

    model_config = SettingsConfigDict(env_prefix="GENOMHUB_SPOKE_HUB_KAFKA_")

    bootstrap: str | None = Field(
        default=None,
        description="Spoke: the hub's Kafka bootstrap servers, where it acknowledges each revision it shows "
        "(spoke-revision-applied). Unset: it acknowledges nothing, and shows what it verifies all the same.",
    )
    username: str | None = Field(
        default=None,
        description="Spoke: its Kafka user on the hub's broker (genomhub-spoke-<region>). Unset: the password the hub's "
        "local broker wrote under <home>/kafka/credentials.",
    )
    password: SecretStr | None = Field(
        default=None, description="Spoke: the password of its Kafka user on the hub's broker."
    )


class ArchiveSettings(Section):
    store: str = Field(
        default="",
        description="fsspec URL of the archive (file:// or s3://). Unset: <home>/store.",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="S3 endpoint for s3:// URLs (e.g. moto or on-premise S3)."
    )
    header_store: str = Field(
        default="",
        description="fsspec URL where the Crypt4GH header of every archived file lives, apart from "
        "its body (key rotation rewrites headers only; back it up with the databases). Unset: "
        "<home>/headers.",
    )
    key: ArchiveKeySettings = part(ArchiveKeySettings)
    state: StateSettings = part(StateSettings)

    @property
    def store_url(self) -> str:
        return self.store or (self.state.state_dir / "store").as_uri()

    @property
    def header_store_url(self) -> str:
        return self.header_store or (self.state.state_dir / "headers").as_uri()


FileKind = Literal["raw", "harmonised"]
"""What the lifecycle tells apart: reads as received, and the harmoniser's outputs."""


def _default_lifecycle() -> dict[FileKind, tuple[int, int]]:
    return {"raw": (30, 180), "harmonised": (90, 365)}


class TierSettings(Section):
    """The archive's storage tiers: flash for what is in use, disk, and tape.

    Each tier is an fsspec URL. A cold ``s3://`` tier is a tape gateway speaking S3's archive
    storage classes; a cold ``file://`` tier is a folder whose reads wait for a simulated
    recall (the delay and drives below), so the embedded stack shows what tape does."""

    model_config = SettingsConfigDict(env_prefix="GENOMHUB_TIER_")

    hot: str = Field(
        default="",
        description="fsspec URL of the hot tier (flash), where the receiver archives. Unset: the archive "
        "(`GENOMHUB_STORE`).",
    )
    warm: str = Field(default="", description="fsspec URL of the warm tier (disk). Unset: <home>/tiers/warm.")
    cold: str = Field(
        default="",
        description="fsspec URL of the cold tier (tape): s3:// on a tape gateway (archive storage classes), "
        "or a folder recalled with the delay and drives below. Unset: <home>/tiers/cold.",
    )
    cold_storage_class: Literal["GLACIER", "DEEP_ARCHIVE"] = Field(
        default="DEEP_ARCHIVE", description="S3 storage class bodies are written to on an s3:// cold tier."
    )
    recall_delay: float = Field(
        default=30.0,
        ge=0,
        description="Folder cold tier: seconds one recall holds a drive before its file is readable.",
    )
    drives: int = Field(default=2, ge=1, description="Cold tier: recalls under way at once (tape drives).")
    pin_hours: float = Field(
        default=72.0, gt=0, description="Hours a recalled file stays readable (pinned) once staged."
    )
    lifecycle: dict[FileKind, tuple[int, int]] = Field(
        default_factory=_default_lifecycle,
        description="JSON object: kind of file (`raw` reads as received, `harmonised` outputs) -> "
        "[days without access before hot->warm, before ->cold] (equal: straight to cold).",
    )
    state: StateSettings = part(StateSettings)
    archive: ArchiveSettings = part(ArchiveSettings)

    @model_validator(mode="after")
    def _cooling_order(self) -> TierSettings:
        for kind, (warm, cold) in self.lifecycle.items():
            if not 0 <= warm <= cold:
                raise ValueError(
                    f"GENOMHUB_TIER_LIFECYCLE {kind}: warm after {warm} days must not come after cold after {cold}"
                )
        return self

    def url(self, tier: Literal["hot", "warm", "cold"]) -> str:
        """The tier's URL: unset, the archive for hot, a folder under the state folder else."""
        if tier == "hot":
            return self.hot or self.archive.store_url
        return str(getattr(self, tier)) or (self.state.state_dir / "tiers" / tier).as_uri()


class TelemetrySettings(Section):
    log_level: str = Field(default="INFO", description="Log level of the JSON logs.")


class TokenSettings(Section):
    tokens: dict[str, str | dict[str, str | list[str]]] = Field(
        default_factory=dict,
        description="JSON object: sha256 hex of a bearer token -> its holder (a region or `ngc`), "
        'or {"holder": ..., "roles": [...]} with roles among uploader, clinician, data-steward, '
        "finance, operator (a bare holder keeps its old roles: uploader; ngc finance and operator).",
    )


class ReferenceSettings(Section):
    model_config = SettingsConfigDict(env_prefix="GENOMHUB_REFERENCE_")

    fasta: Path | None = Field(
        default=None,
        description="FASTA (with .fai) of the reference genome, which reads are aligned to and CRAMs "
        "decoded against (`genomhub validate --reference` overrides it); the harmoniser's local backend "
        "and the `synthetic-v1` profile need it (the local stack sets the synthetic reference). Unset: "
        "CRAMs are reported `cram.reference_required`.",
    )
    profile: str = Field(
        default=SYNTHETIC_NAME,
        description="Reference files must match: `GRCh38` in production, `synthetic-v1` embedded.",
    )

    def required_fasta(self) -> Path:
        if self.fasta is None:
            raise SettingsError(
                "no reference FASTA configured: set GENOMHUB_REFERENCE_FASTA (the local stack sets "
                "the synthetic reference)"
            )
        return self.fasta


class GuidelineSettings(Section):
    model_config = SettingsConfigDict(env_prefix="GENOMHUB_GUIDELINE_")

    version: str = Field(
        default="ngc-clinical-output-2026.1",
        description="Id of the national guideline set clinical output is checked against.",
    )
    pipelines: list[str] = Field(
        default_factory=lambda: ["nf-core/sarek"],
        description="JSON list: pipelines whose provenance (CRAM @PG, VCF ##source) the guideline allows.",
    )


class GenomeEquivalentSettings(Section):
    model_config = SettingsConfigDict(env_prefix="GENOMHUB_GE_")

    rule: Literal["bases", "analysis"] = Field(
        default="bases",
        description="Genome-equivalent rule: `bases` = raw bases / ge_bases_per_genome; `analysis` = "
        "ge_analysis_weights of the submission's analysis type.",
    )
    bases_per_genome: int = Field(
        default=30 * 3_100_000_000, gt=0, description="Bases that make one genome equivalent (30x of 3.1 Gb)."
    )
    analysis_weights: dict[str, Decimal] = Field(
        default_factory=lambda: {
            "WGS": Decimal("1.0"),
            "long-read WGS": Decimal("1.0"),
            "WES": Decimal("0"),
            "panel": Decimal("0"),
        },
        description="JSON object analysis type -> genome equivalents per sample under the `analysis` rule.",
    )


class PolicySettings(Section):
    harmonisation_policy: HarmonisationPolicy = Field(
        default=HarmonisationPolicy.HARMONISE_AND_STORE,
        description="Which of the working group's four models decides what NGC harmonises "
        "(design.md section 6): harmonise-and-store, international, partial or national.",
    )


class UploadSettings(Section):
    """The regional uploader's client (``genomhub upload``), not a service."""

    model_config = SettingsConfigDict(env_prefix="GENOMHUB_UPLOAD_")

    ca_bundle: Path | None = Field(
        default=None,
        description="`genomhub upload`: PEM CA bundle the receiver's certificate is verified against "
        "(NGC's own CA). Unset: the system's CA store.",
    )


SHARED_PARTS: tuple[type[Section], ...] = (
    StateSettings,
    KafkaSettings,
    TopicSettings,
    HttpSettings,
    ArchiveSettings,
    ArchiveKeySettings,
    HubKeySettings,
    HubKafkaSettings,
    TierSettings,
    TelemetrySettings,
    TokenSettings,
    ReferenceSettings,
    GuidelineSettings,
    GenomeEquivalentSettings,
    PolicySettings,
    UploadSettings,
)


# --- the services' sections ----------------------------------------------------------------


class ServiceSettings(Section):
    """What every service process has: its port, the state folder, Kafka, HTTP and logging.
    A service's own section adds its fields (named under its prefix) and the parts it uses."""

    port: int
    state: StateSettings = part(StateSettings)
    kafka: KafkaSettings = part(KafkaSettings)
    http: HttpSettings = part(HttpSettings)
    telemetry: TelemetrySettings = part(TelemetrySettings)


class StatefulServiceSettings(ServiceSettings):
    """A service that keeps relational state: its ``database_url`` (each section says whose),
    unset meaning the embedded default, a SQLite file of ``embedded_database`` in the state
    folder."""

    embedded_database: ClassVar[str]
    database_url: str

    @model_validator(mode="after")
    def _embedded_database(self) -> StatefulServiceSettings:
        self.database_url = self.database_url or self.state.sqlite(self.embedded_database)
        return self


class ReceiverSettings(StatefulServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GENOMHUB_RECEIVER_")
    embedded_database = "receiver.db"

    port: int = Field(default=8480, description="Receiver: upload API and probes.")
    database_url: str = Field(
        default="",
        description="Receiver: SQLAlchemy URL of its submission state. Unset: SQLite <home>/receiver.db.",
    )
    lease_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Receiver: length of the database lease on a file being written or a submission being "
        "sealed, renewed every third of it; a replica that dies frees its files after this long.",
    )
    s3_part_size: int = Field(
        default=8 << 20,
        ge=5 << 20,
        le=5 << 30,
        description="Receiver: bytes of each part of an S3 upload in transit (S3: 5 MiB to 5 GiB), "
        "more for a file that would need more than S3's 10,000 parts (a 500 GiB file: 54 MiB). A "
        "cut PUT keeps its whole parts; each upload holds two parts in memory.",
    )
    max_file_size: int = Field(
        default=500 * 2**30, gt=0, description="Receiver: largest file it accepts, in bytes (413 beyond)."
    )
    inboxes: dict[str, str] = Field(
        default_factory=dict,
        description="Receiver: JSON object region -> fsspec URL of its inbox; `register` reads only there.",
    )
    idle_timeout: float = Field(
        default=120.0, gt=0, description="Receiver: seconds without a byte before a PUT counts as cut off."
    )
    max_uploads: int = Field(
        default=10,
        gt=0,
        description="Receiver: file bodies received at once (16 MiB each); one more gets 503.",
    )
    max_uploads_per_region: int = Field(
        default=2,
        gt=0,
        description="Receiver: file bodies of one region received at once; one more gets 503. "
        "Five regions times this, at most `GENOMHUB_RECEIVER_MAX_UPLOADS`, keeps every region a slot.",
    )
    min_rate: float = Field(
        default=131072.0,
        ge=0,
        description="Receiver: bytes a second a PUT must keep up while the receiver waits for it, "
        "judged every `GENOMHUB_RECEIVER_MIN_RATE_GRACE` seconds of waiting; slower is cut off "
        "(its prefix kept for resume). 0: no minimum.",
    )
    min_rate_grace: float = Field(
        default=60.0,
        gt=0,
        description="Receiver: seconds of waiting for a PUT's bytes over which its rate is judged.",
    )
    archive: ArchiveSettings = part(ArchiveSettings)
    access: TokenSettings = part(TokenSettings)


class ValidatorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GENOMHUB_VALIDATOR_")

    port: int = Field(default=8481, description="Validator: probes and metrics.")
    workers: int = Field(
        default=2, ge=1, description="Validator: worker processes that check files in parallel."
    )
    spring_executable: Path | None = Field(
        default=None,
        description="Validator: `spring` program that decompresses SPRING archives for the FASTQ "
        "checks. Unset: archives are recognised and reported as needing decompression.",
    )
    archive: ArchiveSettings = part(ArchiveSettings)
    reference: ReferenceSettings = part(ReferenceSettings)
    guideline: GuidelineSettings = part(GuidelineSettings)
    genome_equivalents: GenomeEquivalentSettings = part(GenomeEquivalentSettings)
    policy: PolicySettings = part(PolicySettings)
    tiers: TierSettings = part(TierSettings)


class HarmoniserSettings(StatefulServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GENOMHUB_HARMONISER_")
    embedded_database = "harmoniser/jobs.sqlite"

    port: int = Field(default=8482, description="Harmoniser: probes and metrics.")
    backend: Literal["local", "sarek"] = Field(
        default="local",
        description="Harmoniser: `local` runs Sarek's germline commands here; `sarek` runs nf-core/sarek "
        "through Nextflow on the HPC.",
    )
    concurrency: int = Field(default=1, ge=1, description="Harmoniser: pipeline runs at once.")
    threads: int = Field(default=2, ge=1, description="Harmoniser: threads of each local run.")
    retries: int = Field(
        default=2, ge=0, description="Harmoniser: relaunches of a failed run before it is reported failed."
    )
    retry_delay: float = Field(
        default=60.0,
        ge=0,
        description="Harmoniser: seconds before a failed run is first relaunched, doubled at each further relaunch.",
    )
    sarek_version: str = Field(
        default="3.5.1", description="Harmoniser: the pinned nf-core/sarek release (`nextflow run -r`)."
    )
    pacvar_version: str = Field(
        default="1.0.1",
        description="Harmoniser: the pinned nf-core/pacvar release that the sarek backend runs for PacBio samples.",
    )
    sarek_profile: str = Field(
        default="singularity", description="Harmoniser: Nextflow `-profile` of the site (sarek backend)."
    )
    sarek_config: Path | None = Field(
        default=None,
        description="Harmoniser: executor config passed with `-c` (examples: "
        "services/harmoniser/nextflow/slurm.config, kubernetes.config).",
    )
    sarek_genome: str = Field(
        default="GATK.GRCh38", description="Harmoniser: Sarek's `--genome` (sarek backend)."
    )
    sarek_tools: str = Field(
        default="mpileup",
        description="Harmoniser: Sarek's `--tools` (comma-separated; bcftools calling is `mpileup`).",
    )
    sarek_igenomes_base: str = Field(
        default="",
        description="Harmoniser: local copy of iGenomes passed as Sarek's `--igenomes_base` (an absolute "
        "path; the HPC is offline). Required by the sarek backend.",
    )
    nextflow: str = Field(default="nextflow", description="Harmoniser: the Nextflow launcher.")
    archive: ArchiveSettings = part(ArchiveSettings)
    tiers: TierSettings = part(TierSettings)
    reference: ReferenceSettings = part(ReferenceSettings)
    guideline: GuidelineSettings = part(GuidelineSettings)
    heartbeat_interval: float = Field(
        default=10.0,
        gt=0,
        description="Harmoniser: seconds between the heartbeats that keep a running job's lease, and "
        "between looks for jobs whose lease ended (taken over). Below `GENOMHUB_HARMONISER_LEASE`.",
    )
    lease: float = Field(
        default=60.0,
        gt=0,
        description="Harmoniser: seconds a replica holds a job after its last heartbeat; a job not "
        "heard of for longer is taken over by another replica and its old run stopped.",
    )
    database_url: str = Field(
        default="",
        description="Harmoniser: SQLAlchemy URL of its job queue, shared by its replicas (postgresql://... "
        "in production). Unset: SQLite <home>/harmoniser/jobs.sqlite, for one harmoniser on one host.",
    )


class IndexerSettings(StatefulServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GENOMHUB_INDEXER_")
    embedded_database = "catalogue.sqlite"

    port: int = Field(default=8483, description="Indexer: catalogue API and probes.")
    database_url: str = Field(
        default="",
        description="Indexer: SQLAlchemy URL of the national catalogue (postgresql://... in "
        "production). Unset: SQLite <home>/catalogue.sqlite.",
    )
    access: TokenSettings = part(TokenSettings)


class BillingSettings(StatefulServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GENOMHUB_BILLING_")
    embedded_database = "billing.sqlite"

    port: int = Field(default=8484, description="Billing: finance API and probes.")
    database_url: str = Field(
        default="",
        description="Billing: SQLAlchemy URL of its accruals, grant ledger and statements. Unset: SQLite "
        "<home>/billing.sqlite.",
    )
    standard_rate_dkk: int = Field(
        default=300,
        ge=0,
        description="NNF standard refund per genome equivalent, whole DKK: the rate when the grant "
        "balance allows it (January 2026 was balance-limited at 264).",
    )
    opening_balance_dkk: Decimal | None = Field(
        default=None,
        ge=0,
        decimal_places=2,
        description="Grant balance in DKK written as the ledger's opening entry when the ledger is "
        "empty. Unset: record it with `genomhub billing grant add`.",
    )
    auto_close_days: int | None = Field(
        default=None,
        ge=0,
        description="Close a month automatically this many days after it ends. Unset: close by hand.",
    )
    access: TokenSettings = part(TokenSettings)


class AccessSettings(StatefulServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GENOMHUB_ACCESS_")
    embedded_database = "access.sqlite"

    port: int = Field(default=8485, description="Access: discovery, requests, decisions, audit API.")
    database_url: str = Field(
        default="",
        description="Access: SQLAlchemy URL of its requests, grants and audit ledger. Unset: SQLite "
        "<home>/access.sqlite.",
    )
    grant_days: int = Field(
        default=14, ge=1, description="Access: days a granted working-copy request stays in force."
    )
    audit_head_interval: float = Field(
        default=300.0,
        gt=0,
        description="Access: seconds between publications of the audit ledger's head (audit-head).",
    )
    url_secret: SecretStr | None = Field(
        default=None,
        description="Access: secret that signs working-copy download URLs (from a Secret; the same "
        "on every replica). Unset: <home>/access-url.secret, made at first use.",
    )
    url_minutes: int = Field(
        default=5, ge=1, le=60, description="Access: minutes a signed working-copy download URL opens."
    )
    visa_key: SecretStr | None = Field(
        default=None,
        description="Access: PEM of the EC P-256 key that signs GA4GH Passport visas (from a Secret; the "
        "same on every replica). Unset: <home>/access-visa.pem, made at first use.",
    )
    passport_issuer: str = Field(
        default="",
        description="Access: the issuer URL of its visas and Passports: its public base URL, where "
        "/.well-known/jwks.json is served. Unset: http://127.0.0.1:<port>.",
    )
    access: TokenSettings = part(TokenSettings)
    archive: ArchiveSettings = part(ArchiveSettings)
    tiers: TierSettings = part(TierSettings)


class ArchiveServiceSettings(StatefulServiceSettings):
    """The archive service: where each body is, its moves down the tiers, its recalls."""

    model_config = SettingsConfigDict(env_prefix="GENOMHUB_ARCHIVE_")
    embedded_database = "archive.sqlite"

    port: int = Field(default=8486, description="Archive: probes and metrics.")
    database_url: str = Field(
        default="",
        description="Archive: SQLAlchemy URL of where each body is, its moves and recalls. Unset: SQLite "
        "<home>/archive.sqlite.",
    )
    round_interval: float = Field(
        default=60.0,
        gt=0,
        description="Archive: seconds between rounds of the lifecycle's moves and the recalls' progress.",
    )
    lease_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Archive: length of the lease under which one replica runs the rounds, renewed every "
        "third of it (and never shorter than three rounds); a replica that dies mid-move hands the "
        "rounds over after this long.",
    )
    recall_attempts: int = Field(
        default=4, ge=1, description="Archive: recalls of a file tried before it is reported FAILED."
    )
    recall_backoff: float = Field(
        default=300.0,
        gt=0,
        description="Archive: seconds before a failed recall is tried again, doubled at each attempt.",
    )
    campaign_budget_gb: float = Field(
        default=500.0,
        gt=0,
        description="Archive: raw reads a reanalysis campaign holds recalled at once (GB), from a "
        "submission's recall until its rerun is harmonised; the next submission waits for room.",
    )
    drive_rate_mb: float = Field(
        default=400.0,
        gt=0,
        description="Archive: a tape drive's read rate (MB/s), by which a campaign deals the tapes to the drives.",
    )
    mount_seconds: float = Field(
        default=90.0,
        ge=0,
        description="Archive: seconds a tape mount costs (robot, load, thread), for the campaign's plan.",
    )
    tiers: TierSettings = part(TierSettings)


class PublisherSettings(StatefulServiceSettings):
    """The hub's publisher: each spoke's signed catalogue feed (design.md section 11)."""

    model_config = SettingsConfigDict(env_prefix="GENOMHUB_PUBLISHER_")
    embedded_database = "publisher.sqlite"

    port: int = Field(default=8487, description="Publisher: probes and metrics.")
    database_url: str = Field(
        default="",
        description="Publisher: SQLAlchemy URL of the lease that makes one replica the feeds' writer. "
        "Unset: SQLite <home>/publisher.sqlite.",
    )
    checkpoint_every: int = Field(
        default=1000,
        ge=1,
        description="Publisher: a feed's signed checkpoint follows at most this many entries.",
    )
    checkpoint_interval: float = Field(
        default=1.0,
        gt=0,
        description="Publisher: seconds at most between an entry and the checkpoint that lets a spoke show it.",
    )
    publish_interval: float = Field(
        default=0.2,
        gt=0,
        description="Publisher: seconds between publications of what changed (coalesced per spoke and sample).",
    )
    lease_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Publisher: length of the lease under which one replica writes the feeds, renewed every "
        "third of it; a standby replica takes over this long after the writer died elsewhere (at once on "
        "the same host).",
    )
    restore_timeout: float = Field(
        default=300.0,
        gt=0,
        description="Publisher: seconds allowed to read a spoke's feed whole at start (its state).",
    )
    hub: HubKeySettings = part(HubKeySettings)
    access: TokenSettings = part(TokenSettings)


class SpokeSettings(StatefulServiceSettings):
    """A region's spoke (design.md section 11): its mirror of the national catalogue, beside
    the region's own broker, not part of the hub's stack."""

    model_config = SettingsConfigDict(env_prefix="GENOMHUB_SPOKE_")
    embedded_database = "spoke.sqlite"

    port: int = Field(default=8488, description="Spoke: its catalogue API and probes.")
    region: Region | None = Field(
        default=None, description="Spoke: the region whose spoke this is, whose feed it reads; required."
    )
    database_url: str = Field(
        default="",
        description="Spoke: SQLAlchemy URL of the catalogue it shows (one verified revision). Unset: SQLite "
        "<home>/spoke.sqlite.",
    )
    hub_public_key: Path | None = Field(
        default=None,
        description="Spoke: the hub's public key it pins (PEM, as `genomhub keys generate-hub` writes "
        "it); entries not signed by it, or by a key it announced, are refused. Unset: <home>/keys/hub.pub.",
    )
    hub_kafka: HubKafkaSettings = part(HubKafkaSettings)
    hub_access_url: str = Field(
        default="",
        description="Spoke: the hub's access service, which the region's portal asks with the signed-in "
        "person's token (https://; plain http to loopback only). Unset: the portal shows the mirror alone.",
    )
    hub_ca_bundle: Path | None = Field(
        default=None,
        description="Spoke: CA bundle the hub's access service is checked against (else the system's).",
    )
    access: TokenSettings = part(TokenSettings)

    def pinned_path(self) -> Path:
        return self.hub_public_key or self.state.state_dir / "keys" / "hub.pub"


SERVICE_SETTINGS: dict[str, type[ServiceSettings]] = {
    "receiver": ReceiverSettings,
    "validator": ValidatorSettings,
    "harmoniser": HarmoniserSettings,
    "indexer": IndexerSettings,
    "billing": BillingSettings,
    "access": AccessSettings,
    "archive": ArchiveServiceSettings,
    "publisher": PublisherSettings,
}
"""Each service's section by the service's name (``genomhub run``, the local stack's ports)."""


SITE_SERVICE_SETTINGS: dict[str, type[ServiceSettings]] = {"spoke": SpokeSettings}
"""The services a region runs at its own site, beside its own broker, not in the hub's stack
(nor its Kubernetes base, nor its ``genomhub db upgrade``)."""


def _stateful_sections() -> dict[str, type[StatefulServiceSettings]]:
    return {
        name: section
        for name, section in SERVICE_SETTINGS.items()
        if issubclass(section, StatefulServiceSettings)
    }


def stateful_services() -> list[str]:
    """The services that keep relational state, each migrated by ``genomhub db upgrade``."""
    return list(_stateful_sections())


def database_urls() -> dict[str, str]:
    """The database of each service that keeps relational state (``genomhub db upgrade``)."""
    return {name: section().database_url for name, section in _stateful_sections().items()}


def variables(section: type[Section]) -> dict[str, str]:
    """Each variable a section reads itself (its shared parts read theirs) -> its field's name."""
    prefix = str(section.model_config.get("env_prefix", ""))
    return {
        f"{prefix}{name}".upper(): name
        for name, field in section.model_fields.items()
        if not (isinstance(field.annotation, type) and issubclass(field.annotation, Section))
    }


def every_variable() -> dict[str, tuple[type[Section], str]]:
    """Every ``GENOMHUB_*`` variable of every section -> the section and field that read it."""
    found: dict[str, tuple[type[Section], str]] = {}
    for section in (*SHARED_PARTS, *SERVICE_SETTINGS.values(), *SITE_SERVICE_SETTINGS.values()):
        for variable, name in variables(section).items():
            found[variable] = (section, name)
    return found
