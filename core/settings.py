"""One typed Settings object, read from ``NIGHTJAR_*`` environment variables and an optional TOML file.

Built once in ``main()`` or the API's lifespan and passed down; nothing reads settings at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from nightjar import paths, storage


class Settings(BaseSettings):
    """Nightjar configuration.

    The lake (``lake_uri``) and the context catalogues (``catalogs_uri``) live under ``home`` unless given a local
    folder or an ``s3://bucket/prefix`` of their own; both reach object storage with ``storage_options``.

    Examples
    --------
    >>> s = Settings(home="/tmp/nj")
    >>> s.lake_dir.name
    'lake'
    >>> s.catalogs.uri
    '/tmp/nj/catalogs'
    >>> Settings(home="/tmp/nj", catalogs_uri="s3://context/catalogs/").catalogs
    CatalogsRoot('s3://context/catalogs')
    """

    model_config = SettingsConfigDict(env_prefix="NIGHTJAR_", extra="forbid")

    home: Path = Field(default=Path("nightjar-data"), description="Data directory (lake, metadata, broker).")
    lake_uri: str | None = Field(
        default=None,
        description="Where the lake's Delta tables live: a local folder or s3://bucket/prefix (an S3-compatible "
        "object store); unset: NIGHTJAR_HOME/lake. Dask workers need nothing else to reach it.",
    )
    catalogs_uri: str | None = Field(
        default=None,
        description="Where the context catalogues (one HATS collection each) live: a local folder or "
        "s3://bucket/prefix, reached with the same storage options as the lake; unset: NIGHTJAR_HOME/catalogs. "
        "`nightjar catalog import` writes there; the pipeline's Dask workers and the API read there.",
    )
    storage_options: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Options reaching the lake and the catalogues on object storage, as delta-rs names them, as "
        'JSON in the environment: {"AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_REGION": "us-east-1", '
        '"AWS_ACCESS_KEY_ID": "...", "AWS_SECRET_ACCESS_KEY": "...", "AWS_ALLOW_HTTP": "true", '
        '"AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false"}. Options not given come from the AWS_* environment variables. '
        "Values are never shown in logs or settings dumps.",
    )
    kafka: str | None = Field(
        default=None, description="Kafka bootstrap servers of the input cluster (alerts); unset: the embedded broker."
    )
    scheduler: str | None = Field(default=None, description="Dask scheduler address; unset: a LocalCluster.")
    database_url: str | None = Field(default=None, description="Metadata DB URL; unset: SQLite under home.")

    # Embedded broker (Tansu) for dev, tests and the demo.
    broker_port: int = Field(default=19092, ge=1, le=65535)
    broker_start_timeout_s: float = 20.0
    broker_storage: Literal["disk", "memory"] = Field(
        default="disk",
        description="Where the embedded broker keeps topics, messages and committed offsets: 'disk' (under "
        "NIGHTJAR_HOME/broker/data, they survive a broker restart) or 'memory' (lost at every restart).",
    )

    # Kafka client behaviour. Tansu lets a consumer join its group only after half of the session timeout.
    kafka_session_timeout_ms: int = 6000
    kafka_outage_s: float = Field(
        default=900.0, gt=0, description="How long a run waits, retrying, for Kafka to come back before it stops."
    )
    consumer_group: str = "nightjar"
    topic_partitions: int = Field(default=2, ge=1)
    # Production Kafka: two clusters, security options, durable topics (see docs/deploy.md, "Kafka").
    kafka_output: str | None = Field(
        default=None,
        description="Kafka bootstrap servers of the output cluster (filter topics, dead letters, annotations); "
        "unset: the input cluster.",
    )
    kafka_config: dict[str, SecretStr | bool | int | float] = Field(
        default_factory=dict,
        description="librdkafka properties for every client of the input cluster, as JSON in the environment: "
        '{"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "...", '
        '"sasl.password": "..."}. Values are never shown in logs or settings dumps.',
    )
    kafka_output_config: dict[str, SecretStr | bool | int | float] | None = Field(
        default=None,
        description="librdkafka properties for the output cluster; unset: kafka_config when the output cluster is "
        "the input cluster, none otherwise.",
    )
    topic_replication_factor: int = Field(
        default=1, ge=1, description="Replicas of each topic Nightjar creates (3 on a production cluster)."
    )
    topic_config: dict[str, str] = Field(
        default_factory=dict,
        description='Topic configuration of the topics Nightjar creates, e.g. {"retention.ms": "604800000", '
        '"min.insync.replicas": "2"}.',
    )
    annotations_topic: str = Field(
        default="nightjar.annotations",
        description="New annotations, one message each; the pipeline runs the filters that read annotations.",
    )

    # Local Dask cluster (when no scheduler is given).
    workers: int = Field(default=2, ge=1)
    threads_per_worker: int = Field(
        default=2,
        ge=1,
        description="Tasks a worker runs at once: two, so that a batch is fetched while another decodes or commits.",
    )
    bulk_slots_per_worker: int = Field(
        default=1,
        ge=0,
        description="Bulk tasks (a batch's fetch and decode) a local worker runs at once (a Dask worker resource, "
        "'bulk'); its other threads stay free for the batches ahead in the commit order. 0: no bound.",
    )
    worker_memory_limit: str = Field(
        default="6GiB",
        description="Dask's memory limit of each local worker (it pauses at 80 %): a heavy batch of 2,000 alerts "
        "takes ~1.5 GB on its worker from fetch to commit.",
    )

    # Micro-batching.
    batch_size: int = Field(default=2000, ge=1, description="Maximum alerts per micro-batch.")
    batch_timeout_s: float = Field(default=2.0, gt=0, description="Longest wait to fill a micro-batch.")
    batches_in_flight: int = Field(
        default=4,
        ge=1,
        description="Micro-batches on the cluster at once (two per worker): the next are fetched and decoded while "
        "one commits.",
    )
    max_message_bytes: int = Field(default=4_000_000, description="Larger messages are dead-lettered.")
    schema_registry_url: str | None = Field(
        default=None, description="Confluent-compatible schema registry; unset: schemas from lsst-alert-packet."
    )

    # HEALPix.
    partition_order: int = Field(default=5, ge=0, le=12, description="Coarse HEALPix order of hpx_part.")

    # Context catalogues: memory each Dask worker may spend on cached partition indexes.
    catalog_cache_mb: int = Field(default=2048, ge=16, description="Per-process cache of catalogue indexes.")
    # Watchlists and watchmaps: memory each Dask worker may spend on cached cone and area indexes (a 10^7-cone
    # watchlist takes ~0.5 GB).
    watch_cache_mb: int = Field(default=4096, ge=16, description="Per-process cache of watchlist indexes.")

    # SQL sandbox.
    query_memory_limit: str = "2GB"
    query_threads: int = Field(default=2, ge=1)
    query_timeout_s: float = Field(default=60.0, gt=0)
    filter_timeout_s: float = Field(default=10.0, gt=0)
    query_max_rows: int = Field(default=100_000, ge=1)
    query_temp_dir_limit: str = "2GB"

    # Row limits per role (static queries), and API requests per minute per token (anonymous: per client address).
    role_max_rows: dict[str, int] = Field(
        default_factory=lambda: {
            "anonymous": 1_000,
            "user": 100_000,
            "annotator": 100_000,
            "power": 10_000_000,
            "admin": 10_000_000,
        },
        description="Most rows a static query may return, by role.",
    )
    role_requests_per_minute: dict[str, int] = Field(
        default_factory=lambda: {"anonymous": 30, "user": 600, "annotator": 1200, "power": 3000, "admin": 0},
        description="API requests per minute by role; 0: unlimited.",
    )
    allow_anonymous: bool = Field(default=True, description="Serve read-only calls without a token.")
    query_page_size: int = Field(default=1000, ge=1, description="Rows per page of the query API.")
    # Long queries as jobs: results written as Parquet under home/jobs.
    job_timeout_s: float = Field(default=3600.0, gt=0)
    job_max_rows: int = Field(default=50_000_000, ge=1)
    job_workers: int = Field(default=1, ge=1)
    # A hard cap on the memory of processes that run user SQL (see core/memory_cap.py); None: computed.
    process_memory_cap: str | None = None
    query_isolation: bool = Field(
        default=True,
        description="Run static queries in a child process killed at the time limit (a single huge scalar call "
        "cannot be interrupted in process).",
    )

    # Filters: matches per filter per batch, failures in a row before a filter is switched off.
    filter_max_rows: int = Field(default=10_000, ge=1)
    filter_max_failures: int = Field(default=3, ge=1)
    ledger_compact_every: int = Field(default=200, ge=1, description="Batches between ledger compactions.")
    lake_compact_every: int = Field(
        default=20,
        ge=0,
        description="Batches between background compactions of the lake's small files while `run` ingests, each in a "
        "niced process of its own (0: never).",
    )
    # E-mail digests (SMTP).
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_sender: str = "nightjar@localhost"
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_timeout_s: float = Field(default=20.0, gt=0)
    digest_max_rows: int = Field(default=50, ge=1, description="Rows shown in an e-mail body (all are attached).")
    # Webhooks (HTTP POST).
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_retries: int = Field(default=3, ge=1)
    webhook_allow_private: bool = Field(
        default=False, description="Allow webhooks to loopback and private addresses (tests, closed networks)."
    )

    # HTTP API.
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    public_url: str | None = Field(
        default=None,
        description="The web portal's address as its users reach it (https://broker.example.org): filter e-mails "
        "and webhook payloads link to its object pages. None: no links.",
    )
    classifiers: list[str] = Field(
        default_factory=list,
        description="Classifier plug-ins (pipelines/classifiers: early_snia) run on every batch; their outputs are "
        "annotations the batch's filters see. JSON in the environment: NIGHTJAR_CLASSIFIERS='[\"early_snia\"]'. "
        "Empty: none.",
    )
    api_trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses (or networks) of reverse proxies whose X-Forwarded-For/-Proto are believed; "
        "empty: none, the client address is the TCP peer's (rate limits of anonymous callers key on it).",
    )

    @field_validator("home", mode="before")
    @classmethod
    def _local_home(cls, value: object) -> object:
        # Path("s3://bucket/x") is the local folder "s3:/bucket/x": refuse it rather than write there.
        if isinstance(value, str) and storage.is_uri(value):
            raise ValueError(
                f"NIGHTJAR_HOME must be a local folder, not {value!r}: put the lake on object storage with "
                "NIGHTJAR_LAKE_URI (and NIGHTJAR_STORAGE_OPTIONS)"
            )
        return value

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("lake_uri", "catalogs_uri")
    @classmethod
    def _storage_uri(cls, value: str | None) -> str | None:
        return storage.check_uri(value) if value is not None and storage.is_uri(value) else value

    @property
    def lake_dir(self) -> Path:
        """The local lake folder (``lake_uri`` when it is a local folder); a StorageError on object storage."""
        return self.lake.path

    @property
    def lake(self) -> storage.LakeRoot:
        """The lake's location and the options to reach it: what every lake reader and writer is given."""
        if self.lake_uri is None:
            return storage.lake_root(self.home)
        return storage.LakeRoot(self.lake_uri, self._storage_options())

    @property
    def catalogs(self) -> storage.CatalogsRoot:
        """The context catalogues' location and the options to reach it: what every catalogue reader and writer
        is given (the CLI, the pipeline's workers, the API)."""
        if self.catalogs_uri is None:
            return storage.catalogs_root(self.home)
        return storage.CatalogsRoot(self.catalogs_uri, self._storage_options())

    def _storage_options(self) -> dict[str, str]:
        # (str values too: model_copy(update=...) does not validate)
        return {
            k: v.get_secret_value() if isinstance(v, SecretStr) else str(v) for k, v in self.storage_options.items()
        }

    @property
    def metadata_url(self) -> str:
        """The metadata database's SQLAlchemy URL: ``database_url``, or the SQLite file under the home."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / paths.METADATA_DB_FILE}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Read settings from the arguments, then the environment, then the TOML file given with ``--config``."""
        # Precedence: explicit arguments, then the environment, then the TOML file given with --config.
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_file = _CONFIG_FILE.get("path")
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


# Set only for the duration of load_settings(); pydantic-settings takes its sources from a classmethod.
_CONFIG_FILE: dict[str, Path | None] = {}


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Build the Settings from arguments, ``NIGHTJAR_*`` variables and an optional TOML file.

    Parameters
    ----------
    config
        A TOML file whose keys are Settings field names (``home = "/data/nightjar"``).
    overrides
        Values that win over the environment and the file.
    """
    if config is not None and not config.is_file():
        raise FileNotFoundError(f"config file not found: {config}")
    _CONFIG_FILE["path"] = config
    try:
        return Settings(**overrides)
    finally:
        _CONFIG_FILE.pop("path", None)
