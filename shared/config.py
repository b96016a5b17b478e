"""The one settings object of genomhub.

Every knob is read from a ``GENOMHUB_*`` environment variable (documented in the README),
so the same code runs as the embedded demo, in the tests and in Kubernetes, where the
variables come from a ConfigMap and a Secret. Nothing else in the project reads the
environment for configuration.
"""

from __future__ import annotations

import json
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.events import HarmonisationPolicy
from shared.profiles import SYNTHETIC_NAME


class Settings(BaseSettings):
    """genomhub's configuration; each field is ``GENOMHUB_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="GENOMHUB_", extra="ignore")

    home: Path = Field(
        default=Path(".genomhub"),
        description="State folder of a local stack: broker data, job state, SQLite files.",
    )
    cache: Path = Field(
        default=Path.home() / ".cache" / "genomhub",
        description="Cache outside git for downloaded jars, built binaries and indexes.",
    )
    kafka_bootstrap: str | None = Field(
        default=None,
        description="Kafka bootstrap servers. Unset: the address `genomhub kafka start` recorded.",
    )
    kafka_security_protocol: Literal["SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="SASL_PLAINTEXT",
        description="How clients reach Kafka, always with SCRAM-SHA-512: `SASL_SSL` (TLS) in "
        "Kubernetes; `SASL_PLAINTEXT` only to a broker on loopback (the local broker).",
    )
    kafka_username: str | None = Field(
        default=None,
        description="Kafka user of this process (the KafkaUser's name in Kubernetes). Unset: the "
        "process's own principal, with the password the local broker wrote under <home>/kafka/credentials.",
    )
    kafka_password: SecretStr | None = Field(
        default=None,
        description="Password of `GENOMHUB_KAFKA_USERNAME` (in Kubernetes from the Secret Strimzi makes).",
    )
    kafka_ca_file: Path | None = Field(
        default=None,
        description="CA bundle that verifies the brokers' TLS certificates under `SASL_SSL` (Strimzi's "
        "cluster CA). Unset: the system's CAs.",
    )
    topic_partitions: int = Field(default=3, description="Partitions of each core topic.")
    topic_replicas: int = Field(default=1, description="Replication factor of each topic.")
    store: str = Field(
        default="",
        description="fsspec URL of the archive (file:// or s3://). Unset: <home>/store.",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="S3 endpoint for s3:// URLs (e.g. moto or on-premise S3)."
    )
    reference_fasta: Path | None = Field(
        default=None,
        description="FASTA of the reference genome, which reads are aligned to and CRAMs decoded against "
        "(`genomhub validate --reference` overrides it). Unset: the synthetic reference in the cache, "
        "which never decodes a GRCh38 CRAM (the validator then reports `cram.reference_required`).",
    )
    reference_profile: str = Field(
        default=SYNTHETIC_NAME,
        description="Reference files must match: `GRCh38` in production, `synthetic-v1` embedded.",
    )
    tokens: dict[str, str] = Field(
        default_factory=dict,
        description="JSON object: sha256 hex of a bearer token -> its holder, a region or `ngc`.",
    )
    log_level: str = Field(default="INFO", description="Log level of the JSON logs.")
    http_host: str = Field(default="127.0.0.1", description="Interface the HTTP servers bind.")
    http_tls_cert: Path | None = Field(
        default=None,
        description="PEM certificate chain every HTTP server serves TLS with (with `GENOMHUB_HTTP_TLS_KEY`; "
        "in Kubernetes a mounted Secret). Unset: plain HTTP, for loopback and a TLS proxy in front.",
    )
    http_tls_key: Path | None = Field(
        default=None, description="PEM private key of `GENOMHUB_HTTP_TLS_CERT`."
    )
    http_head_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a connection has to deliver a whole request, head and body (from its "
        "opening, or from a kept-alive request's first byte); then it is closed. An upload's body has "
        "its own limits instead (`GENOMHUB_RECEIVER_IDLE_TIMEOUT`, `GENOMHUB_RECEIVER_MIN_RATE`).",
    )
    receiver_port: int = Field(default=8480, description="Receiver: upload API and probes.")
    receiver_db: str = Field(
        default="",
        description="Receiver: SQLAlchemy URL of its submission state. Unset: SQLite <home>/receiver.db.",
    )
    receiver_max_file_size: int = Field(
        default=500 * 2**30, gt=0, description="Receiver: largest file it accepts, in bytes (413 beyond)."
    )
    receiver_inboxes: dict[str, str] = Field(
        default_factory=dict,
        description="Receiver: JSON object region -> fsspec URL of its inbox; `register` reads only there.",
    )
    receiver_s3_part_size: int = Field(
        default=8 << 20,
        ge=5 << 20,
        le=5 << 30,
        description="Receiver: bytes of each part of an S3 upload in transit (S3: 5 MiB to 5 GiB), "
        "more for a file that would need more than S3's 10,000 parts (a 500 GiB file: 54 MiB). A "
        "cut PUT keeps its whole parts; each upload holds two parts in memory.",
    )
    receiver_idle_timeout: float = Field(
        default=120.0, gt=0, description="Receiver: seconds without a byte before a PUT counts as cut off."
    )
    receiver_max_uploads: int = Field(
        default=10,
        gt=0,
        description="Receiver: file bodies received at once (16 MiB each); one more gets 503.",
    )
    receiver_max_uploads_per_region: int = Field(
        default=2,
        gt=0,
        description="Receiver: file bodies of one region received at once; one more gets 503. "
        "Five regions times this, at most `GENOMHUB_RECEIVER_MAX_UPLOADS`, keeps every region a slot.",
    )
    receiver_min_rate: float = Field(
        default=131072.0,
        ge=0,
        description="Receiver: bytes a second a PUT must keep up while the receiver waits for it, "
        "judged every `GENOMHUB_RECEIVER_MIN_RATE_GRACE` seconds of waiting; slower is cut off "
        "(its prefix kept for resume). 0: no minimum.",
    )
    receiver_min_rate_grace: float = Field(
        default=60.0,
        gt=0,
        description="Receiver: seconds of waiting for a PUT's bytes over which its rate is judged.",
    )
    upload_ca_bundle: Path | None = Field(
        default=None,
        description="`genomhub upload`: PEM CA bundle the receiver's certificate is verified against "
        "(NGC's own CA). Unset: the system's CA store.",
    )
    validator_port: int = Field(default=8481, description="Validator: probes and metrics.")
    harmonisation_policy: HarmonisationPolicy = Field(
        default=HarmonisationPolicy.HARMONISE_AND_STORE,
        description="Which of the working group's four models decides what NGC harmonises "
        "(design.md section 6): harmonise-and-store, international, partial or national.",
    )
    ge_rule: Literal["bases", "analysis"] = Field(
        default="bases",
        description="Genome-equivalent rule: `bases` = raw bases / ge_bases_per_genome; `analysis` = "
        "ge_analysis_weights of the submission's analysis type.",
    )
    ge_bases_per_genome: int = Field(
        default=30 * 3_100_000_000, gt=0, description="Bases that make one genome equivalent (30x of 3.1 Gb)."
    )
    ge_analysis_weights: dict[str, Decimal] = Field(
        default_factory=lambda: {
            "WGS": Decimal("1.0"),
            "long-read WGS": Decimal("1.0"),
            "WES": Decimal("0"),
            "panel": Decimal("0"),
        },
        description="JSON object analysis type -> genome equivalents per sample under the `analysis` rule.",
    )
    guideline_version: str = Field(
        default="ngc-clinical-output-2026.1",
        description="Id of the national guideline set clinical output is checked against.",
    )
    guideline_pipelines: list[str] = Field(
        default_factory=lambda: ["nf-core/sarek"],
        description="JSON list: pipelines whose provenance (CRAM @PG, VCF ##source) the guideline allows.",
    )
    spring_executable: Path | None = Field(
        default=None,
        description="Validator: `spring` program that decompresses SPRING archives for the FASTQ "
        "checks. Unset: archives are recognised and reported as needing decompression.",
    )
    validator_workers: int = Field(
        default=2, ge=1, description="Validator: worker processes that check files in parallel."
    )
    harmoniser_port: int = Field(default=8482, description="Harmoniser: probes and metrics.")
    harmoniser_backend: Literal["local", "sarek"] = Field(
        default="local",
        description="Harmoniser: `local` runs Sarek's germline commands here; `sarek` runs nf-core/sarek "
        "through Nextflow on the HPC.",
    )
    harmoniser_concurrency: int = Field(default=1, ge=1, description="Harmoniser: pipeline runs at once.")
    harmoniser_threads: int = Field(default=2, ge=1, description="Harmoniser: threads of each local run.")
    harmoniser_retries: int = Field(
        default=2, ge=0, description="Harmoniser: relaunches of a failed run before it is reported failed."
    )
    harmoniser_retry_delay: float = Field(
        default=60.0, ge=0, description="Harmoniser: seconds before a failed run is relaunched."
    )
    harmoniser_sarek_version: str = Field(
        default="3.5.1", description="Harmoniser: the pinned nf-core/sarek release (`nextflow run -r`)."
    )
    harmoniser_pacvar_version: str = Field(
        default="1.0.1",
        description="Harmoniser: the pinned nf-core/pacvar release that the sarek backend runs for PacBio samples.",
    )
    harmoniser_sarek_profile: str = Field(
        default="singularity", description="Harmoniser: Nextflow `-profile` of the site (sarek backend)."
    )
    harmoniser_sarek_config: Path | None = Field(
        default=None,
        description="Harmoniser: executor config passed with `-c` (examples: "
        "services/harmoniser/nextflow/slurm.config, kubernetes.config).",
    )
    harmoniser_sarek_genome: str = Field(
        default="GATK.GRCh38", description="Harmoniser: Sarek's `--genome` (sarek backend)."
    )
    harmoniser_sarek_tools: str = Field(
        default="mpileup",
        description="Harmoniser: Sarek's `--tools` (comma-separated; bcftools calling is `mpileup`).",
    )
    harmoniser_sarek_igenomes_base: str = Field(
        default="",
        description="Harmoniser: local copy of iGenomes passed as Sarek's `--igenomes_base` (an absolute "
        "path; the HPC is offline). Required by the sarek backend.",
    )
    harmoniser_nextflow: str = Field(default="nextflow", description="Harmoniser: the Nextflow launcher.")
    indexer_port: int = Field(default=8483, description="Indexer: catalogue API and probes.")
    billing_port: int = Field(default=8484, description="Billing: finance API and probes.")
    catalogue_url: str = Field(
        default="",
        description="SQLAlchemy URL of the indexer's national catalogue (postgresql://... in "
        "production). Unset: SQLite <home>/catalogue.sqlite.",
    )
    billing_url: str = Field(
        default="",
        description="SQLAlchemy URL of billing's accruals, grant ledger and statements. Unset: SQLite "
        "<home>/billing.sqlite.",
    )
    billing_standard_rate_dkk: int = Field(
        default=300,
        ge=0,
        description="NNF standard refund per genome equivalent, whole DKK: the rate when the grant "
        "balance allows it (January 2026 was balance-limited at 264).",
    )
    billing_opening_balance_dkk: Decimal | None = Field(
        default=None,
        ge=0,
        decimal_places=2,
        description="Grant balance in DKK written as the ledger's opening entry when the ledger is "
        "empty. Unset: record it with `genomhub billing grant add`.",
    )
    billing_auto_close_days: int | None = Field(
        default=None,
        ge=0,
        description="Close a month automatically this many days after it ends. Unset: close by hand.",
    )

    @property
    def state_dir(self) -> Path:
        return self.home.resolve()

    @property
    def catalogue_database_url(self) -> str:
        return self.catalogue_url or f"sqlite:///{self.state_dir / 'catalogue.sqlite'}"

    @property
    def receiver_database_url(self) -> str:
        return self.receiver_db or f"sqlite:///{self.state_dir / 'receiver.db'}"

    def database_urls(self) -> dict[str, str]:
        """The database of each service that keeps relational state."""
        return {
            "receiver": self.receiver_database_url,
            "indexer": self.catalogue_database_url,
            "billing": self.billing_database_url,
        }

    @property
    def billing_database_url(self) -> str:
        return self.billing_url or f"sqlite:///{self.state_dir / 'billing.sqlite'}"

    @property
    def store_url(self) -> str:
        return self.store or (self.state_dir / "store").as_uri()

    def reference(self) -> Path:
        """The reference FASTA (with .fai) that CRAMs are decoded and reads aligned against."""
        if self.reference_fasta is not None:
            return self.reference_fasta
        from shared.synthetic import synthetic_reference

        return synthetic_reference(self.cache)

    def port_of(self, service: str) -> int:
        return int(getattr(self, f"{service}_port"))

    def bootstrap_servers(self) -> str:
        """The broker to talk to: the configured one, else the local broker's record."""
        if self.kafka_bootstrap:
            return self.kafka_bootstrap
        record = self.state_dir / "kafka" / "broker.json"
        if record.exists():
            return str(json.loads(record.read_text())["bootstrap"])
        raise RuntimeError(
            "no Kafka broker configured: set GENOMHUB_KAFKA_BOOTSTRAP or run `genomhub kafka start`"
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
