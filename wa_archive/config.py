"""Configuration from WA_ARCHIVE_* environment variables (and a .env file)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from urllib.parse import urlparse

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from wa_archive.config_messages import describe_error
from wa_archive.contacts.feed_options import ConsentFeedOptions
from wa_archive.contacts.keywords import keyword_matcher, parse_keywords
from wa_archive.errors import ConfigError, ConfigProblems
from wa_archive.health.active_hours import ActiveHours, parse_active_hours
from wa_archive.health.capture import listed_numbers
from wa_archive.models import ArchiveOptions, OutboundOptions

ENV_PREFIX = "WA_ARCHIVE_"


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _ports_are_numbers(url: str) -> bool:
    """Whether every host of a PostgreSQL URL (host:port[,host:port…], [IPv6]:port) names its port, if
    any, in digits, as the driver reads them."""
    for host in urlparse(url).netloc.rpartition("@")[2].split(","):
        after_address = host.rpartition("]")[2] if host.startswith("[") else host
        if ":" in after_address:
            port = after_address.rpartition(":")[2]
            if not (port.isascii() and port.isdigit()):
                return False
    return True


def parse_networks(value: str) -> tuple[IPNetwork, ...]:
    """Comma-separated addresses or CIDRs as networks; ValueError naming the first bad entry."""
    networks = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or CIDR (e.g. 10.0.0.0/8, ::1)") from None
    return tuple(networks)


class Settings(BaseSettings):
    """Every knob of the archive. Secrets are SecretStr so they never reach a log line."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_ignore_empty=True, extra="ignore"
    )

    data_dir: Path = Path("./.wa-archive")
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    database_url: str | None = None
    temporal_address: str | None = None
    temporal_namespace: str | None = None  # unset: the Temporal profile's (TEMPORAL_NAMESPACE), else `default`
    temporal_port: int = Field(default=7233, ge=1, le=65535)  # the embedded dev server's frontend (dev only)
    temporal_ui_port: int = Field(default=8233, ge=0, le=65535)
    task_queue: str = "wa-archive"
    storage_url: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_sse: str = "AES256"
    s3_kms_key_id: str | None = None
    s3_object_lock_mode: str = "COMPLIANCE"
    s3_part_size_mib: int = Field(default=8, ge=5, le=512)
    meta_app_secret: SecretStr | None = None
    meta_verify_token: SecretStr | None = None
    meta_access_token: SecretStr | None = None
    meta_graph_url: str = "https://graph.facebook.com/v23.0"
    wasender_webhook_secret: SecretStr | None = None
    wasender_api_key: SecretStr | None = None
    wasender_api_url: str = "https://www.wasenderapi.com"
    wasender_decrypt_via_api: bool = False  # WASender's decrypt-media endpoint instead of our own decryption
    whatsapp_media_host: str = "https://mmg.whatsapp.net"  # base of a WhatsApp directPath
    contact_key_secret: SecretStr | None = None
    ledger_signing_key: SecretStr | None = None  # base64 of a 32-byte Ed25519 seed
    # Keys of the Temporal payload codec: `id:base64key`, comma-separated; the first encrypts, all decrypt.
    payload_keys: SecretStr | None = None
    payload_keys_file: Path | None = None  # the same entries, one per line or comma-separated
    ledger_checkpoint_every: float = Field(default=3600.0, ge=1)
    retention_days: int = Field(default=2557, ge=1)  # the default policy until `retention set --default`
    min_lock_seconds: float = Field(default=86400.0, ge=1)  # floor of any object's retain-until, from its write
    s3_lifecycle_transition_days: int = Field(default=90, ge=1)
    s3_lifecycle_storage_class: str = "GLACIER_IR"  # `none`: a store without tiers, no transition rule
    allow_unversioned_bucket: bool = False
    disposition_cron: str = "30 4 * * *"
    disposition_batch: int = Field(default=200, ge=1, le=10_000)
    retry_max_attempts: int = Field(default=5, ge=1, le=100)
    retry_initial_interval: float = Field(default=10.0, gt=0)
    retry_backoff: float = Field(default=2.0, ge=1.0)
    retry_max_interval: float = Field(default=600.0, gt=0)
    media_heartbeat_timeout: float = Field(default=30.0, gt=0)
    media_attempt_timeout: float = Field(default=1800.0, gt=0)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_concurrent_activities: int = Field(default=20, ge=1)
    inline_fanout_max: int = Field(default=20, ge=0)
    meta_waba_id: str | None = None
    retrieval_cron: str = "0 3 1 * *"
    retrieval_sample: int = Field(default=100, ge=1, le=100_000)
    outbound_sent_wait: float = Field(default=600.0, gt=0)
    outbound_record_wait: float = Field(default=7 * 24 * 3600.0, gt=0)
    media_fetch_allowlist: str | None = None
    media_fetch_max_bytes: int = Field(default=100 * 1024 * 1024, ge=1)
    media_fetch_timeout: float = Field(default=60.0, gt=0)
    log_level: str = "INFO"
    # Graph calls only where meant: besides the Graph base URL's own origin, the bearer token goes
    # only to these media download hosts (exact names, any scheme; `*.suffix` patterns, https only).
    meta_media_hosts: str = "*.fbsbx.com,*.whatsapp.net"
    # Reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (comma-separated CIDRs);
    # from any other peer those headers are ignored, so a client cannot forge its address or TLS.
    trusted_proxies: str | None = None
    # Verifiers' trust anchor: the ledger's public key (base64 or hex), held apart from the archive.
    # verify-receipt and verify-export refuse to run without it (or --public-key). The server requires
    # it unless it has the signing key: only checkpoint rows signed with it are used.
    ledger_public_key: str | None = None
    # Database roles: `migrate` connects as the schema owner; everything else as the application
    # role, which owns nothing and holds only the grants `migrate` gives it.
    migrate_database_url: str | None = None  # the owner's URL; `migrate` falls back to database_url
    database_app_role: str = "wa_archive_app"  # the role `migrate` grants to (the one in database_url)
    # The Temporal UI's origin(s), comma-separated (e.g. https://temporal.example.com): the only pages
    # that may call the codec server from a browser. `dev` allows the UI it starts.
    temporal_ui_origin: str | None = None
    # How long Temporal keeps a closed workflow's history: working state, never the record.
    temporal_retention_days: int = Field(default=30, ge=1, le=3650)
    # Reaching a real Temporal cluster or Temporal Cloud. Each overrides the same field of the Temporal
    # client profile (temporal.toml, TEMPORAL_* variables); see wa_archive/temporal/connection.py.
    temporal_api_key: SecretStr | None = None  # sent as `authorization: Bearer`; implies TLS
    temporal_tls: bool | None = None  # unset: TLS when any TLS setting or an API key is given
    temporal_tls_server_ca_cert_path: Path | None = None  # unset: the system's roots
    temporal_tls_server_name: str | None = None  # SNI and the name checked in the server's certificate
    temporal_tls_client_cert_path: Path | None = None  # mTLS: PEM certificate (chain)
    temporal_tls_client_key_path: Path | None = None  # mTLS: its PEM private key
    temporal_profile: str | None = None  # profile in the Temporal config file (TEMPORAL_PROFILE)
    temporal_config_file: Path | None = None  # Temporal's TOML config file (TEMPORAL_CONFIG_FILE)
    # Daily reconciliation (wa_archive/integrity/reconciliation.py): when the Schedule reconciles the
    # previous UTC day, time allowed beyond each message's own deadline (queueing, a worker restart),
    # and how far Meta's daily `sent` count may differ from the outbound messages archived before the
    # day is red: the larger of an absolute count and a percentage of Meta's figure.
    reconcile_cron: str = "15 0 * * *"
    reconcile_grace: float = Field(default=3600.0, ge=0)
    reconcile_meta_tolerance: int = Field(default=2, ge=0)
    reconcile_meta_tolerance_percent: float = Field(default=1.0, ge=0, le=100)
    # Consent (wa_archive/contacts/): whether a marketing template sent with no consent on record is a
    # finding too, not only one sent after an opt-out (`consent report`, GET /api/v1/consent/report).
    consent_required: bool = False
    # Capture health (wa_archive/health/capture.py). Off while the limit is unset: a threshold that fits
    # one number's traffic would cry wolf on a quieter one, so only the operator can choose it.
    silence_alert_minutes: float | None = Field(default=None, gt=0)
    silence_active_hours: str = "always"  # e.g. `Mon-Fri 08:00-18:00 Europe/London`
    silence_numbers: str | None = None  # unset: every number heard; else only these (phone_number_ids, wasender)
    silence_check_every: float = Field(default=300.0, ge=1)  # seconds between two checks (a Temporal Schedule)
    # Consent feeds (wa_archive/contacts/feeds.py): stop/start words per language as JSON
    # ({"en": {"stop": [...], "start": [...]}}; unset: the defaults in wa_archive/contacts/keywords.py),
    # and Meta's send error codes that mean "this person stopped marketing messages" (comma-separated).
    consent_keywords: str | None = None
    consent_optout_error_codes: str = "131050"
    # Metrics and worker health (wa_archive/observability/): the worker's /metrics, /healthz and /readyz
    # port (off while unset; `dev` picks one), the address it binds (0.0.0.0 in a container, so Prometheus
    # can reach it), and how often each process reads the database-derived gauges (never per scrape).
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    metrics_refresh_seconds: float = Field(default=30.0, ge=0.1)
    # Operations (wa_archive/logs.py, wa_archive/archive/redrive.py): the HTTP access log (JSON, route
    # patterns only), and the re-drive of deliveries stored but never handed to Temporal (a 503 while it
    # was down): when the Schedule runs, how long a delivery is left to the webhook's own hand-off
    # first, and how many deliveries one run hands over at most.
    http_access_log: bool = True
    redrive_cron: str = "* * * * *"
    redrive_grace_seconds: float = Field(default=120.0, ge=0)
    redrive_batch: int = Field(default=200, ge=1, le=10_000)
    # The ledger's integrator (wa_archive/integrity/sequencing.py): records add leaf candidates without a
    # shared lock, and a Temporal Schedule numbers them into the log every this many seconds. Receipts for
    # a record not yet integrated ask the caller to come back after it; `verify` names candidates left
    # waiting longer than sequencing.pending_bound() of it.
    ledger_integrate_every: float = Field(default=1.0, ge=1)
    # How long a webhook server may answer an API token from memory (wa_archive/access/token_cache.py):
    # only while it hears of every change to the tokens, so this bounds only a notification lost on a
    # connection that silently stopped. 0: every request checks the token in the database.
    api_token_cache_seconds: float = Field(default=10.0, ge=0, le=60)

    @field_validator("consent_keywords")
    @classmethod
    def _consent_keywords(cls, value: str | None) -> str | None:
        if value is not None:
            parse_keywords(value)
        return value

    @field_validator("consent_optout_error_codes")
    @classmethod
    def _consent_optout_error_codes(cls, value: str) -> str:
        codes = [c.strip() for c in value.split(",") if c.strip()]
        if not codes or not all(c.isascii() and c.isdigit() for c in codes):
            raise ValueError("must be Meta error codes (digits), comma-separated, e.g. 131050")
        return value

    def consent_feed_options(self) -> ConsentFeedOptions:
        """The keywords and error codes the consent feeds read deliveries with (checked when read)."""
        config = parse_keywords(self.consent_keywords) if self.consent_keywords is not None else None
        return ConsentFeedOptions(
            keywords=keyword_matcher(config),
            optout_error_codes=frozenset(c.strip() for c in self.consent_optout_error_codes.split(",") if c.strip()))

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies(cls, value: str | None) -> str | None:
        if value is not None:
            parse_networks(value)
        return value

    @property
    def trusted_proxy_networks(self) -> tuple[IPNetwork, ...]:
        """The trusted proxies as networks; empty when none is configured."""
        return parse_networks(self.trusted_proxies or "")

    @field_validator("temporal_ui_origin")
    @classmethod
    def _ui_origins(cls, value: str | None) -> str | None:
        for origin in (value or "").split(","):
            origin = origin.strip()
            parsed = urlparse(origin)
            if origin and (parsed.scheme not in ("http", "https") or not parsed.netloc
                           or parsed.path not in ("", "/") or parsed.query or parsed.fragment or "@" in parsed.netloc):
                raise ValueError(f"{origin!r} is not an origin such as https://temporal.example.com")
        return value

    @property
    def temporal_ui_origins(self) -> frozenset[str]:
        """The configured UI origins, exactly as a browser sends them in Origin."""
        return frozenset(o.strip().rstrip("/") for o in (self.temporal_ui_origin or "").split(",") if o.strip())

    @field_validator("storage_url")
    @classmethod
    def _storage_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parsed = urlparse(value)
        if parsed.scheme not in ("file", "s3"):
            raise ValueError("must start with file:// or s3://")
        if parsed.scheme == "file" and (parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/")):
            # file://relative/dir would be read as the host `relative` and the path /dir.
            relative = (parsed.netloc + parsed.path).lstrip("/") if parsed.netloc else parsed.path
            raise ValueError(f"{value!r} is not an absolute path: a file:// URL takes one after its two slashes,"
                             f" e.g. file:///var/lib/wa-archive/objects (three slashes); {relative!r} from the"
                             f" current directory is {(Path.cwd() / relative).as_uri()}")
        if parsed.scheme == "s3" and not parsed.netloc:
            raise ValueError("s3:// URL needs a bucket name, e.g. s3://my-archive/prefix")
        return value

    @field_validator("database_url", "migrate_database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        # The value is never repeated: it may hold a password.
        if value is not None and urlparse(value).scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a PostgreSQL URL such as postgresql://wa_archive_app:PASSWORD@db.example.com:5432"
                             "/wa_archive (the value given does not start with postgresql://)")
        if value is not None and not _ports_are_numbers(value):
            # A password holding '/', '#' or '?' ends the URL's host part early, and what follows its ':'
            # is read as a port: the driver's error would then quote the password.
            raise ValueError("a host's port is not a number; if the password holds / # ? or @, write them"
                             " percent-encoded (%2F %23 %3F %40)")
        return value

    @field_validator("s3_object_lock_mode")
    @classmethod
    def _lock_mode(cls, value: str) -> str:
        value = value.upper()
        if value not in ("COMPLIANCE", "GOVERNANCE"):
            raise ValueError("must be COMPLIANCE or GOVERNANCE")
        return value

    @field_validator("s3_sse")
    @classmethod
    def _sse(cls, value: str) -> str:
        if value not in ("AES256", "aws:kms"):
            raise ValueError("must be AES256 (SSE-S3) or aws:kms (SSE-KMS, with WA_ARCHIVE_S3_KMS_KEY_ID)")
        return value

    @field_validator("meta_graph_url")
    @classmethod
    def _graph_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL including the API version")
        return value.rstrip("/")

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        value = value.upper()
        if value not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return value

    @field_validator("silence_active_hours")
    @classmethod
    def _silence_active_hours(cls, value: str) -> str:
        parse_active_hours(value)
        return value

    @field_validator("silence_numbers")
    @classmethod
    def _silence_numbers(cls, value: str | None) -> str | None:
        listed_numbers(value)
        return value

    # Derived values -----------------------------------------------------------------------------

    @property
    def silence_hours(self) -> ActiveHours:
        """The active hours of the silence alert, parsed (validated when the settings were read)."""
        return parse_active_hours(self.silence_active_hours)

    @property
    def silence_listed(self) -> list[str]:
        """The numbers WA_ARCHIVE_SILENCE_NUMBERS names; empty: every number heard is watched."""
        return listed_numbers(self.silence_numbers)

    @property
    def resolved_storage_url(self) -> str:
        """The storage URL, defaulting to a filesystem store under the data dir."""
        return self.storage_url or (self.data_dir.resolve() / "objects").as_uri()

    def archive_options(self) -> ArchiveOptions:
        """The retry and timeout settings handed to each ArchiveMessage workflow at start."""
        return ArchiveOptions(
            retry_max_attempts=self.retry_max_attempts,
            retry_initial_interval=self.retry_initial_interval,
            retry_backoff=self.retry_backoff,
            retry_max_interval=self.retry_max_interval,
            heartbeat_timeout=self.media_heartbeat_timeout,
            attempt_timeout=self.media_attempt_timeout,
        )

    def outbound_options(self) -> OutboundOptions:
        """Waiting times of each OutboundMessage workflow, fixed at its start."""
        return OutboundOptions(sent_wait_seconds=self.outbound_sent_wait,
                               record_wait_seconds=self.outbound_record_wait,
                               waba_id=self.meta_waba_id, archive=self.archive_options())

    def require(self, *names: str) -> None:
        """Fail with one clear line when a setting a command needs is unset."""
        for name in names:
            if getattr(self, name) in (None, ""):
                raise ConfigError(f"{ENV_PREFIX}{name.upper()} is required but not set")


def load_settings(**overrides: object) -> Settings:
    """Read settings; every invalid value is named in one ConfigProblems (one line per problem)."""
    settings, problems = read_settings(**overrides)
    if problems:
        raise ConfigProblems(problems)
    return settings


def read_settings(**overrides: object) -> tuple[Settings, list[str]]:
    """The settings and every problem of their values, in our words. An invalid value is replaced by
    its default in what is returned, so that a caller can go on to find the other problems of the
    configuration (and must refuse to start while any is listed)."""
    try:
        return Settings(**overrides), []  # type: ignore[arg-type]
    except ValidationError as exc:
        errors = exc.errors()
    problems, invalid = [], {}
    for error in errors:
        name = str(error["loc"][0]) if error["loc"] else "?"
        field = Settings.model_fields.get(name)
        problems.append(describe_error(f"{ENV_PREFIX}{name.upper()}", name, field, error))
        if field is not None:
            invalid[name] = field.get_default(call_default_factory=True)
    try:
        return Settings(**{**overrides, **invalid}), problems
    except ValidationError:  # not expected: every default is valid
        raise ConfigProblems(problems) from None
