"""Settings: one pydantic-settings class per concern, read from ``SEGSTREAM_*`` environment variables.

Build them once at the entry point with :meth:`Settings.load` and pass the pieces down; library code never
reads the environment itself. Secrets are :class:`~pydantic.SecretStr`, so ``repr``, ``str``, logging and
``model_dump_json`` show ``**********`` instead of the value; a password embedded in the Redis URL is
redacted the same way.

Environment variables (all optional)::

    SEGSTREAM_KAFKA_BOOTSTRAP_SERVERS, SEGSTREAM_KAFKA_SECURITY_PROTOCOL, SEGSTREAM_KAFKA_SASL_MECHANISM,
    SEGSTREAM_KAFKA_SASL_USERNAME, SEGSTREAM_KAFKA_SASL_PASSWORD, SEGSTREAM_KAFKA_SSL_CAFILE, ...
    SEGSTREAM_REDIS_URL, SEGSTREAM_REDIS_PASSWORD, SEGSTREAM_REDIS_SSL_CERT_REQS, SEGSTREAM_REDIS_KEY_PREFIX
    SEGSTREAM_TOPIC_TRANSACTIONS, ..., SEGSTREAM_TOPIC_PARTITIONS
    SEGSTREAM_MODEL_ROOT, SEGSTREAM_MODEL_SIGNING_KEY
    SEGSTREAM_WEB_PORT, SEGSTREAM_WORKER_BATCH_SIZE, ...
    SEGSTREAM_EVENTS_MIN_TIMESTAMP, SEGSTREAM_EVENTS_MAX_TIMESTAMP
    SEGSTREAM_STACK_STATE_DIR, SEGSTREAM_STACK_KAFKA_PORT, SEGSTREAM_STACK_REDIS_PORT
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from segstream.models.contract import DEFAULT_MAX_TIMESTAMP_MS, DEFAULT_MIN_TIMESTAMP_MS, EventLimits

__all__ = [
    "DatabaseSettings",
    "EventsSettings",
    "KafkaSettings",
    "ModelSettings",
    "RedisSettings",
    "Settings",
    "StackSettings",
    "TopicSettings",
    "WorkerSettings",
    "redact_url",
    "settings_error_message",
]


def _config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, extra="ignore", populate_by_name=True)


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``**********`` (safe to log)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:**********@{host}"))


SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSettings(BaseSettings):
    """How to reach Kafka (or the embedded Tansu broker), plus consumer-group tuning.

    Group tuning for Tansu 0.6.0 (measured, see ``segstream/embedded/__init__.py``): the broker answers a
    JoinGroup only after about ``session_timeout_ms / 2``, whatever the rebalance timeout, so a short
    session timeout (6 s, also the smallest real Kafka accepts by default) makes joins take ~3 s instead
    of 30 s with faust's 60 s default. ``max_poll_interval_ms`` stays high (300 s): a worker whose buffer
    is full must not be thrown out of the group. kafka-python has no separate rebalance timeout; it sends
    ``max_poll_interval_ms`` as the rebalance timeout, which Tansu did not wait for in our measurements.
    """

    model_config = _config("SEGSTREAM_KAFKA_")

    bootstrap_servers: str = "127.0.0.1:19092"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    client_id: str = "segstream"
    session_timeout_ms: int = Field(default=6000, ge=1000)
    heartbeat_interval_ms: int = Field(default=1000, ge=100)
    rebalance_timeout_ms: int = Field(default=5000, ge=1000)
    max_poll_interval_ms: int = Field(default=300_000, ge=1000)
    request_timeout_ms: int = Field(default=40_000, ge=1000)
    # How long a fetch may wait for data. faust hard-codes 1500 ms; the embedded broker then holds every
    # fetch that long (p99 ~1.8 s); 10 ms measured p99 147 ms at 1,000 ev/s. Raise it on a busy real cluster.
    fetch_max_wait_ms: int = Field(default=10, ge=0)

    def bootstrap_list(self) -> list[str]:
        """``bootstrap_servers`` split on commas, blanks removed."""
        return [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()]

    @property
    def uses_sasl(self) -> bool:
        """True for SASL_PLAINTEXT and SASL_SSL."""
        return self.security_protocol.startswith("SASL")

    @property
    def uses_ssl(self) -> bool:
        """True for SSL and SASL_SSL."""
        return self.security_protocol.endswith("SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """An SSL context from the CA/cert/key files, or None when the protocol does not use TLS."""
        if not self.uses_ssl:
            return None
        context = ssl.create_default_context(cafile=self.ssl_cafile)
        if self.ssl_certfile:
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        return context

    def _sasl_kwargs(self) -> dict[str, Any]:
        if not self.uses_sasl:
            return {}
        return {
            "sasl_mechanism": self.sasl_mechanism or "PLAIN",
            "sasl_plain_username": self.sasl_username,
            "sasl_plain_password": self.sasl_password.get_secret_value() if self.sasl_password else None,
        }

    def _connection_kwargs(self) -> dict[str, Any]:
        """What kafka-python and aiokafka name alike: brokers, client id, protocol, timeout, SASL."""
        return {
            "bootstrap_servers": self.bootstrap_list(),
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": self.request_timeout_ms,
            **self._sasl_kwargs(),
        }

    def kafka_python_kwargs(self) -> dict[str, Any]:
        """Connection kwargs for kafka-python's KafkaProducer, KafkaConsumer and KafkaAdminClient."""
        kwargs = self._connection_kwargs()
        if self.uses_ssl:
            kwargs.update(ssl_cafile=self.ssl_cafile, ssl_certfile=self.ssl_certfile, ssl_keyfile=self.ssl_keyfile)
        return kwargs

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Connection kwargs for aiokafka's AIOKafkaProducer / AIOKafkaConsumer / AIOKafkaAdminClient."""
        kwargs = self._connection_kwargs()
        if self.uses_ssl:
            kwargs["ssl_context"] = self.ssl_context()
        return kwargs

    def consumer_group_kwargs(self, client: Literal["kafka-python", "aiokafka"] = "kafka-python") -> dict[str, Any]:
        """Group-membership kwargs that make joins fast on Tansu and stay safe on Apache Kafka.

        Merge with the connection kwargs:
        ``KafkaConsumer(topic, group_id=g, **s.kafka_python_kwargs(), **s.consumer_group_kwargs())``.
        """
        kwargs: dict[str, Any] = {
            "session_timeout_ms": self.session_timeout_ms,
            "heartbeat_interval_ms": self.heartbeat_interval_ms,
            "max_poll_interval_ms": self.max_poll_interval_ms,
        }
        if client == "aiokafka":
            kwargs["rebalance_timeout_ms"] = self.rebalance_timeout_ms
        return kwargs

    def faust_broker_url(self) -> str:
        """The faust ``broker`` setting, e.g. ``kafka://h1:9092;h2:9092``."""
        return "kafka://" + ";".join(self.bootstrap_list())

    def faust_broker_credentials(self) -> Any:
        """faust ``broker_credentials`` (SASLCredentials / SSLCredentials), or None for PLAINTEXT."""
        import faust  # heavy; only the worker needs it

        if self.uses_sasl:
            return faust.SASLCredentials(
                username=self.sasl_username,
                password=self.sasl_password.get_secret_value() if self.sasl_password else None,
                mechanism=self.sasl_mechanism or "PLAIN",
                ssl_context=self.ssl_context(),
            )
        if self.uses_ssl:
            return faust.SSLCredentials(self.ssl_context())
        return None

    def faust_app_kwargs(self) -> dict[str, Any]:
        """Broker settings for ``faust.App(...)``: URL, credentials and the group tuning (in seconds)."""
        kwargs: dict[str, Any] = {
            "broker": self.faust_broker_url(),
            "broker_session_timeout": self.session_timeout_ms / 1000,
            "broker_heartbeat_interval": self.heartbeat_interval_ms / 1000,
            "broker_rebalance_timeout": self.rebalance_timeout_ms / 1000,
            "broker_max_poll_interval": self.max_poll_interval_ms / 1000,
            "broker_request_timeout": self.request_timeout_ms / 1000,
        }
        credentials = self.faust_broker_credentials()
        if credentials is not None:
            kwargs["broker_credentials"] = credentials
        return kwargs


class RedisSettings(BaseSettings):
    """Where the feature state lives. ``password`` overrides a password given in ``url``."""

    model_config = _config("SEGSTREAM_REDIS_")

    url: str = "redis://127.0.0.1:16379/0"
    password: SecretStr | None = None
    # TLS applies to rediss:// URLs only; redis-py rejects these options for plain redis://.
    ssl_cert_reqs: Literal["required", "optional", "none"] | None = None
    ssl_ca_certs: str | None = None
    key_prefix: str = "segstream"
    # Customers are spread over this many shards (hash slots on a Redis Cluster); fixed once state is written:
    # a worker set to another count refuses to start. More shards spread a cluster more finely, fewer make
    # each batch fewer script calls.
    shards: int = Field(default=16, ge=1, le=16384)
    # How long an event id is remembered for dedupe: a redelivery later than this would be folded again,
    # and every event costs one marker key for this long (Redis memory grows with traffic x TTL).
    dedupe_ttl_s: int = Field(default=7 * 24 * 3600, ge=1)
    # With fold = "worker": customers whose parsed state a worker keeps between batches (~3.4 KB each with 16 day
    # buckets: 50,000 take ~170 MB); one seen again is not read before its commit. 0 reads every customer whole.
    fold_cache_customers: int = Field(default=50_000, ge=0)
    # Where each batch is folded into the customer hashes. "redis": a Lua script inside Redis (least worker
    # CPU: the faster choice when the worker is the bottleneck and Redis has a core to itself). "worker": in
    # the worker, Redis only commits (~40% less Redis CPU per event, ~15% more worker CPU; the choice when one
    # Redis or cluster serves many workers). Both keep the same hashes, so workers can switch at any time.
    fold: Literal["redis", "worker"] = "redis"
    socket_timeout_s: float = 5.0
    health_check_interval_s: float = 30.0

    @field_serializer("url", when_used="json")
    def _redact(self, url: str) -> str:
        return redact_url(url)

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, (redact_url(value) if name == "url" else value)

    @property
    def uses_tls(self) -> bool:
        """True for ``rediss://`` URLs."""
        return urlsplit(self.url).scheme == "rediss"

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``redis.Redis.from_url(settings.url, **kwargs)`` (sync or asyncio)."""
        kwargs: dict[str, Any] = {
            "socket_timeout": self.socket_timeout_s,
            "socket_connect_timeout": self.socket_timeout_s,
            "health_check_interval": self.health_check_interval_s,
        }
        if self.password is not None:
            kwargs["password"] = self.password.get_secret_value()
        if self.uses_tls:
            if self.ssl_cert_reqs is not None:
                kwargs["ssl_cert_reqs"] = self.ssl_cert_reqs
            if self.ssl_ca_certs is not None:
                kwargs["ssl_ca_certs"] = self.ssl_ca_certs
        return kwargs


class TopicSettings(BaseSettings):
    """Topic names (defaults are the contract in DESIGN.md) and how new topics are created."""

    model_config = _config("SEGSTREAM_TOPIC_")

    transactions: str = "transactions"
    scored: str = "transactions.scored"
    segment_changes: str = "segment-changes"
    sales_forecasts: str = "sales-forecasts"
    dead_letters: str = "dead-letters"
    monitoring: str = "monitoring"
    campaign_triggers: str = "campaign-triggers"
    # Compacted: the latest attributes per customer (key = customer id), read by the worker.
    customer_profiles: str = "customer-profiles"
    partitions: int = Field(default=4, ge=1)
    replication_factor: int = Field(default=1, ge=1)

    def names(self) -> list[str]:
        """All topic names, input first."""
        return [
            self.transactions,
            self.scored,
            self.segment_changes,
            self.sales_forecasts,
            self.dead_letters,
            self.monitoring,
            self.campaign_triggers,
            self.customer_profiles,
        ]

    def compacted(self) -> list[str]:
        """The topics created with ``cleanup.policy=compact`` (only the latest record per key matters)."""
        return [self.customer_profiles]


class ModelSettings(BaseSettings):
    """Where model bundles live and the key that signs them."""

    model_config = _config("SEGSTREAM_MODEL_")

    root: Path = Path(".segstream/models")
    signing_key: SecretStr | None = None
    # Refuse unsigned bundles even when no key is configured here (a deployment guard).
    require_signature: bool = False


class WorkerSettings(BaseSettings):
    """Knobs of the streaming worker. Add fields freely; env names are ``SEGSTREAM_WORKER_<FIELD>``."""

    model_config = _config("SEGSTREAM_WORKER_")

    web_port: int = Field(
        default=6066,
        # Not a bare WEB_PORT: another tool's variable of that name must not move the worker's port.
        validation_alias=AliasChoices("SEGSTREAM_WEB_PORT", "SEGSTREAM_WORKER_WEB_PORT"),
    )
    # When set, ``/customers/{id}`` (customer-level data) answers only requests carrying
    # ``Authorization: Bearer <token>``; /health and /metrics stay open for probes and scrapers.
    customer_api_token: SecretStr | None = None
    group_id: str = "segstream-worker"
    hysteresis_evaluations: int = Field(default=1, ge=1)
    # Minimum dwell: a new segment must hold for this many days of event time before it is emitted (the
    # inactivity sweep looks again when the dwell ends). 0, the default, is off.
    dwell_days: float = Field(default=0.0, ge=0)
    inactivity_threshold_days: float = Field(default=90.0, gt=0)
    monitoring_interval_s: float = Field(default=10.0, gt=0)
    forecast_refresh_interval_s: float = Field(default=60.0, gt=0)
    # The most events one batch holds; smaller batches form by themselves at lower rates (streams.batching).
    # 1000, not 500: at full load batches then average ~400 events instead of ~260, and a batch's fixed costs
    # (two Lua calls, a produce request per partition) spread further. Measured in the bench on 2026-11-24,
    # worker alone on the same input: 12.3-12.8k events/s at 1000 against 10.7-11.7k at 500; 2000 and 4000
    # were no faster. Latency at low rates is unchanged: batches there are whatever arrived meanwhile.
    batch_size: int = Field(default=1000, ge=1)
    # Events timed further than this after the worker's clock are dead-lettered: one purchase stamped years
    # ahead would move the watermark, and every customer's as-of time, there. A day covers any time-zone
    # mix-up; 0 turns the check off (replaying synthetic data dated in the future).
    max_future_skew_s: float = Field(default=86_400.0, ge=0)
    # Dead-letter alert: when dead letters are at least this share of the events (dead letters + valid events)
    # seen over the last ``dead_letter_alert_window_s`` seconds, the worker logs a WARNING (once, and an INFO
    # once it clears) and /health says "degraded". ``dead_letter_alert_min_events`` keeps a lone bad message
    # on an idle worker from raising it: the window must hold at least that many events.
    dead_letter_alert_share: float = Field(default=0.5, gt=0, le=1)
    dead_letter_alert_window_s: int = Field(default=60, ge=1, le=3600)
    dead_letter_alert_min_events: int = Field(default=10, ge=1)
    # A flap is a change back to the segment a customer left within this many days of event time; the
    # monitoring record and /metrics report their share of all changes (how noisy the triggers are).
    flap_window_days: float = Field(default=7.0, gt=0)
    # Failpoint for fault tests only: SIGKILL the worker after the N-th batch's outputs are delivered and
    # before its finalize (0, the default, never does).
    failpoint_crash_before_finalize: int = Field(default=0, ge=0)
    # Failpoint for fault tests only: hold each inactivity sweep page this many seconds between reading the
    # due customers and writing their evaluations, so sweeps of several workers overlap (0: never).
    failpoint_sweep_page_delay_s: float = Field(default=0.0, ge=0)
    # A campaign rules file (TOML, see `segstream campaigns check`); reloaded without a restart when it
    # changes, verified first. Unset: no campaigns fire.
    campaign_rules: Path | None = None


def _utc_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class EventsSettings(BaseSettings):
    """The event contract's time bounds, read alike by the worker and by cleaning (train, score, replay).

    No calendar floor of our own: real logs go back to the 1990s. An ISO time without an offset is UTC.
    """

    model_config = _config("SEGSTREAM_EVENTS_")

    min_timestamp: datetime = datetime.fromtimestamp(DEFAULT_MIN_TIMESTAMP_MS / 1000, UTC)
    max_timestamp: datetime = datetime.fromtimestamp(DEFAULT_MAX_TIMESTAMP_MS / 1000, UTC)

    @field_validator("min_timestamp", "max_timestamp")
    @classmethod
    def _as_utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @model_validator(mode="after")
    def _ordered(self) -> EventsSettings:
        if self.min_timestamp >= self.max_timestamp:
            raise ValueError("min_timestamp must be before max_timestamp")
        return self

    def limits(self, max_future_skew_s: float) -> EventLimits:
        """The contract's limits with the worker's future-skew limit (``WorkerSettings.max_future_skew_s``)."""
        return EventLimits(_utc_ms(self.min_timestamp), _utc_ms(self.max_timestamp), int(max_future_skew_s * 1000))


class StackSettings(BaseSettings):
    """The embedded dev stack (Tansu broker + Redis server) started by ``segstream stack up``."""

    model_config = _config("SEGSTREAM_STACK_")

    state_dir: Path = Path(".segstream/stack")
    kafka_port: int = Field(default=19092, ge=1, le=65535)
    redis_port: int = Field(default=16379, ge=1, le=65535)
    # "always" so that even a SIGKILLed Redis loses nothing that was acknowledged.
    redis_appendfsync: Literal["always", "everysec", "no"] = "always"
    start_timeout_s: float = Field(default=30.0, gt=0)


class DatabaseSettings(BaseSettings):
    """The SQL database history is read from with ``--sql`` (when ``--db`` is not given)."""

    model_config = _config("SEGSTREAM_DB_")

    # duckdb:///orders.duckdb or postgresql://user@host:5432/db; unset: an in-memory DuckDB.
    url: str | None = None
    # Put into the URL when it has none, so the URL itself can be logged and kept in config files.
    password: SecretStr | None = None


class DashboardSettings(BaseSettings):
    """The dashboard's login. With an OIDC provider configured, every page asks for a login first
    (Streamlit's own ``st.login``); without one the dashboard is open, so keep it on loopback."""

    model_config = _config("SEGSTREAM_DASHBOARD_")

    # The provider's discovery document, e.g. https://accounts.google.com/.well-known/openid-configuration
    oidc_server_metadata_url: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    # Signs the login cookie: a long random string, the same for every dashboard replica.
    oidc_cookie_secret: SecretStr | None = None
    # Where the provider sends the user back: the dashboard's public URL + /oauth2callback.
    oidc_redirect_uri: str = "http://localhost:8501/oauth2callback"
    # Who may see the data once logged in: comma-separated emails and @domains (empty: anyone the provider
    # authenticates).
    allowed_users: str = ""

    @property
    def login_required(self) -> bool:
        """True when an OIDC provider is configured."""
        return self.oidc_server_metadata_url is not None

    def missing(self) -> list[str]:
        """The settings a configured login still needs."""
        needed = {
            "SEGSTREAM_DASHBOARD_OIDC_CLIENT_ID": self.oidc_client_id,
            "SEGSTREAM_DASHBOARD_OIDC_CLIENT_SECRET": self.oidc_client_secret,
            "SEGSTREAM_DASHBOARD_OIDC_COOKIE_SECRET": self.oidc_cookie_secret,
        }
        return [name for name, value in needed.items() if not value] if self.login_required else []

    def allows(self, email: str | None) -> bool:
        """Whether a logged-in user with this email may see the data."""
        rules = [r.strip().lower() for r in self.allowed_users.split(",") if r.strip()]
        if not rules:
            return True
        address = (email or "").strip().lower()
        return bool(address) and any(address == r or (r.startswith("@") and address.endswith(r)) for r in rules)


class Settings(BaseModel):
    """All settings of one process. Build with :meth:`load` at the entry point."""

    model_config = ConfigDict(frozen=True)

    kafka: KafkaSettings
    redis: RedisSettings
    topics: TopicSettings
    models: ModelSettings
    worker: WorkerSettings
    stack: StackSettings
    events: EventsSettings = Field(default_factory=EventsSettings)
    dashboard: DashboardSettings = Field(default_factory=DashboardSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """Read every section from the environment; ``overrides`` replace whole sections.

        Example: ``Settings.load(kafka=KafkaSettings(bootstrap_servers="127.0.0.1:9092"))``.
        """
        sections: dict[str, Any] = {
            "kafka": KafkaSettings,
            "redis": RedisSettings,
            "topics": TopicSettings,
            "models": ModelSettings,
            "worker": WorkerSettings,
            "stack": StackSettings,
            "events": EventsSettings,
            "dashboard": DashboardSettings,
            "database": DatabaseSettings,
        }
        unknown = set(overrides) - set(sections)
        if unknown:
            raise TypeError(f"Settings.load() got unknown sections: {sorted(unknown)}")
        built = {name: overrides[name] if name in overrides else factory() for name, factory in sections.items()}
        return cls(**built)

    def event_limits(self) -> EventLimits:
        """The one set of event limits the worker, cleaning and replay all apply."""
        return self.events.limits(self.worker.max_future_skew_s)


def settings_error_message(exc: BaseException) -> str | None:
    """One line naming each environment variable a settings section refused and why (None for other errors).

    The value itself is left out: it may be a password.
    """
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return None
    section = globals().get(exc.title)  # the model's class name, e.g. WorkerSettings
    if not (isinstance(section, type) and issubclass(section, BaseSettings)):
        return None
    prefix = section.model_config.get("env_prefix") or ""
    reasons = []
    for e in exc.errors():
        name = "_".join(map(str, e["loc"])).upper()
        # A field read through an alias reports the alias (already a full variable name) as its location.
        reasons.append(f"{name if name.startswith('SEGSTREAM_') else prefix + name}: {e['msg']}")
    return "invalid setting: " + "; ".join(reasons)
