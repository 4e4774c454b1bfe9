"""One settings object for the whole program, read from PETPLATFORM_* environment variables."""
from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "PETPLATFORM_"


class OAuthProvider(BaseModel):
    """One identity provider's settings (PETPLATFORM_OAUTH_PROVIDERS); endpoints default to the provider's own
    (mesh/oauth.py), and are overridden only to point at a local provider."""

    model_config = {"frozen": True, "extra": "forbid"}

    client_ids: dict[Literal["web", "ios", "android"], str] = {}  # the audience an ID token must name, per platform
    client_secret: SecretStr | None = None  # the web client's (LINE: the channel secret, which signs web ID tokens)
    issuer: str | None = None
    jwks_uri: str | None = None
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    # Apple: the web client's secret is a JWT signed with this key of this team.
    team_id: str | None = None
    key_id: str | None = None
    private_key: SecretStr | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    profile: Literal["embedded", "real"] = "embedded"
    data_dir: Path = Path("data")
    host: str = "127.0.0.1"
    grpc_port: int = Field(50051, ge=0, le=65535)
    http_port: int = Field(3000, ge=0, le=65535)  # the edge: REST/JSON and gRPC-Web
    edge_grpc_port: int = Field(3443, ge=0, le=65535)  # the edge: gRPC pass-through for mobile apps
    cors_allowed_origins: list[str] = ["http://localhost:3100", "http://127.0.0.1:3100"]  # "*" allows any
    # The web app (clients/web, built into web_dir by `make web`), served by `run --target=all` when built.
    web_port: int = Field(3100, ge=0, le=65535)
    web_dir: Path = Path("clients/web/dist")
    # The admin panel (clients/admin, built into admin_dir by `make web`), served by the same server under /admin/.
    admin_dir: Path = Path("clients/admin/dist")
    # Where the web app calls the edge; unset: the edge's HTTP port on the host the page was loaded from.
    web_edge_url: str | None = None
    rate_limit_per_minute: int = Field(100, ge=1)  # per client: the user when signed in, else the IP
    rate_limit_window_seconds: int = Field(60, ge=1)  # the budget above is per this window
    max_streams_per_client: int = Field(20, ge=1)  # open server streams per client on one edge replica
    # Each service protects itself too, for callers that reach it without the edge:
    max_streams_per_caller: int = Field(100, ge=1)  # open response streams per user (else address), per server
    max_concurrent_rpcs: int = Field(2000, ge=1)  # RPCs in progress per server, streams included
    ip_allow: list[str] = []  # CIDRs; when set, only these may call the edge
    ip_deny: list[str] = []  # CIDRs refused at the edge
    # Shared by the edge and the services: the edge's word on the client's address counts only with it.
    # Unset (embedded profile only): one kept under data_dir, shared by the processes using that dir.
    edge_key: SecretStr | None = Field(None, min_length=32)
    trust_forwarded_for: bool = False  # behind one load balancer: the client IP is X-Forwarded-For's last entry
    max_request_bytes: int = Field(8 * 1024 * 1024, ge=1024)  # photos arrive base64-encoded in JSON
    # The edge's HTTP connections: once a request has begun, its headers must arrive within this...
    http_header_timeout_seconds: float = Field(10, gt=0)
    http_body_timeout_seconds: float = Field(60, gt=0)  # ...and its whole body within this (8 MiB at 140 KB/s)
    http_idle_timeout_seconds: float = Field(75, gt=0)  # a connection without a request closes after this
    # Set by `petplatform run --workers N` in each worker: its servers share their ports (SO_REUSEPORT).
    reuse_port: bool = False
    # Peers are PETPLATFORM_<SERVICE>_ADDR=host:port, one per registry entry (mesh.registry.peer_addresses);
    # unset means this process (all-in-one) or the service's seed port on `host`.

    database_url: str | None = None  # postgresql+asyncpg://... (real profile)
    schema_prefix: str = Field("", pattern=r"^[a-z0-9_]*$")  # isolates test runs sharing one database
    # Per service and process: PostgreSQL's max_connections must cover (pool + overflow) x services x replicas.
    database_pool_size: int = Field(10, ge=1)
    database_max_overflow: int = Field(10, ge=0)
    amqp_url: str | None = None  # amqp://guest:guest@127.0.0.1:5672/
    amqp_exchange: str = "petplatform.events"
    redis_url: str | None = None  # redis://127.0.0.1:6379/0
    s3_endpoint: str | None = None  # host:port of MinIO / S3
    s3_access_key: str = ""
    s3_secret_key: SecretStr = SecretStr("")
    s3_bucket: str = "petplatform"
    s3_secure: bool = True

    # The documents port (chat's rooms and messages): "relational" keeps them in the service's database
    # (SQLite or PostgreSQL); "mongodb" in MongoDB at mongodb_url (a replica set is not needed; see mesh/mongo.py).
    chat_store: Literal["relational", "mongodb"] = "relational"
    mongodb_url: SecretStr | None = None  # mongodb://user:pass@host:27017/ ; "mongomock://": in memory, tests only
    mongodb_database: str = "petplatform"  # the schema prefix is put before it, as before a schema

    smtp_host: str | None = None  # unset: emails are logged, not sent
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    mail_from: str = "Pet Platform <no-reply@petplatform.local>"
    public_url: str = "http://127.0.0.1:3000"  # used in links sent by email

    # Notifications (services/notification): providers, "sink" keeps deliveries in data_dir/notifications.
    notification_push_provider: Literal["sink", "fcm"] = "sink"
    fcm_project_id: str = ""
    fcm_service_account_file: Path | None = None  # the service account's JSON key
    fcm_api_url: str = "https://fcm.googleapis.com"
    notification_ios_push_provider: Literal["sink", "apns", "fcm"] = "sink"  # iOS devices' pushes
    apns_team_id: str = ""
    apns_key_id: str = ""
    apns_private_key_file: Path | None = None  # the .p8 key (EC P-256) token-based auth signs with
    apns_topic: str = ""  # the app's bundle id
    apns_api_url: str = "https://api.push.apple.com"
    apns_ca_file: Path | None = None  # trust these CAs instead of the system's (a test double)
    notification_sms_provider: Literal["sink", "twilio"] = "sink"
    twilio_account_sid: str = ""
    twilio_auth_token: SecretStr = SecretStr("")
    twilio_from_number: str = ""
    twilio_api_url: str = "https://api.twilio.com"
    notification_retry_base_seconds: float = Field(5, gt=0)  # first retry; doubled after each failure...
    notification_retry_max_seconds: float = Field(3600, gt=0)  # ...up to this
    notification_max_attempts: int = Field(8, ge=1)  # then the delivery is dead-lettered
    notification_poll_seconds: float = Field(1.0, gt=0)  # how often due retries are looked for

    jwt_private_key: SecretStr | None = None  # PEM, EC P-256; unset: generated once under data_dir
    # Signs page tokens (HMAC-SHA256). Every replica of a service must share it: production sets it.
    # Unset: generated once under data_dir (embedded), else per process (a token then only works there).
    page_token_key: SecretStr | None = Field(None, min_length=32)
    jwt_previous_public_keys: list[str] = []  # PEMs still accepted while a rotation settles
    jwt_issuer: str = "petplatform"
    jwks_cache_seconds: float = Field(300, gt=0)  # how long verifiers keep the auth service's JWKS
    jwks_min_refetch_seconds: float = Field(10, ge=0)  # an unknown kid refetches at most this often
    access_token_ttl_seconds: int = Field(900, ge=60, le=3600)
    refresh_token_ttl_seconds: int = Field(7 * 24 * 3600, ge=3600)
    verification_token_ttl_seconds: int = Field(48 * 3600, ge=600)
    # bcrypt cost. The embedded profile (development, tests) may go down to 4, a millisecond a hash instead of
    # about 300: half the test suite's CPU was password hashing. Profile 'real' refuses less than 12.
    bcrypt_rounds: int = Field(12, ge=4, le=16)
    # Sign-in throttling (services/auth/throttle.py). Failures count for a window. Past a ceiling, strangers
    # to the account (addresses it has not signed in from) get one attempt per slow interval: slowed, not locked.
    login_max_failures_per_account: int = Field(20, ge=1)  # from every address together
    login_max_failures_per_ip: int = Field(200, ge=1)  # across accounts; high, as a NAT puts many behind one
    login_failure_window_seconds: int = Field(900, ge=1)
    login_backoff_after_failures: int = Field(5, ge=1)  # per account and address; then the back-off below
    login_backoff_base_seconds: float = Field(1, gt=0)  # the first delay, doubled after each further failure
    login_backoff_max_seconds: float = Field(300, gt=0)
    login_slow_interval_seconds: float = Field(60, gt=0)
    login_known_address_seconds: int = Field(30 * 24 * 3600, ge=60)  # a sign-in makes its address known this long
    admin_emails: list[str] = []  # accounts registered with these emails get the admin role
    # Sign-in with identity providers: {"google": {...}, "apple": {...}, "line": {...}} (OAuthProvider).
    oauth_providers: dict[Literal["google", "apple", "line"], OAuthProvider] = {}
    # Serve the local OpenID provider on the edge (/dev-oidc) and offer it as the provider `demo`: development,
    # the demo and tests, never production (anyone can sign in there as anyone).
    dev_oidc: bool = False
    mfa_challenge_seconds: int = Field(300, ge=60, le=900)  # how long a sign-in waits for its second factor
    # How often auth looks for suspensions past their end time, to reinstate them (and say so in an event).
    suspension_sweep_seconds: float = Field(60, gt=0)
    # Encrypts TOTP secrets at rest (AES-256-GCM): base64 of 32 random bytes. New secrets are sealed with
    # this key; secrets sealed with a previous key are still read, and re-sealed with this one at start.
    # Unset (embedded profile only): generated once under data_dir.
    mfa_encryption_key: SecretStr | None = None
    mfa_previous_encryption_keys: list[SecretStr] = []

    outbox_poll_seconds: float = Field(0.5, gt=0)
    event_retention_hours: float = Field(168, gt=0)  # published outbox rows and inbox ids are kept this long
    # The recommender's training job: each period it trains a new model when the one in service is that old
    # (and takes up a model published meanwhile by `petplatform train recommender`); 0 turns the job off.
    recommender_train_seconds: float = Field(3600, ge=0)
    # The fraud scorer's training job (ml/fraud/engine.py): each period it retrains from moderators' labels;
    # 0 trains only at start. Its score log goes to MongoDB when this is a mongodb:// URL, else to its database.
    fraud_train_seconds: float = Field(600, ge=0)
    fraud_logs_url: str | None = Field(None, pattern=r"^mongodb(\+srv)?://")
    watch_max_streams: int = Field(1000, ge=1)  # open WatchPets streams per pet replica
    pet_cache_size: int = Field(10_000, ge=0)  # GetPet answers a pet replica keeps (services/pet/cache.py); 0: none
    pet_cache_ttl_seconds: float = Field(60, gt=0)  # the longest one is kept, whatever events say
    # How long CreatePet waits for fraud's advice (services/pet/screening.py) before publishing unscored.
    pet_screening_deadline_seconds: float = Field(0.3, gt=0)
    # Matching: swipes per user per UTC day; the recommender's deadline and circuit breaker (opens after
    # this many failures or timeouts in a row, lets one probe through after the cool-down).
    matching_daily_swipe_limit: int = Field(1000, ge=1)
    matching_ranking_deadline_seconds: float = Field(0.3, gt=0)
    matching_breaker_failures: int = Field(3, ge=1)
    matching_breaker_cool_down_seconds: float = Field(30, gt=0)
    # Admin: a chat message can be reported this long after it is sent (chat keeps messages for good; the
    # admin service keeps who sent each one only this long); how often older ones are forgotten.
    admin_message_report_days: float = Field(90, gt=0)
    admin_subject_purge_seconds: float = Field(3600, gt=0)
    # Marketplace: a request unanswered this long expires; how often expired requests are looked for.
    marketplace_request_ttl_hours: float = Field(24, gt=0)
    marketplace_sweep_seconds: float = Field(30, gt=0)
    # Payments: the provider adapter; payouts wait this long after completion and keep this share as
    # the platform's fee; how often due work is looked for, and the first retry delay after a
    # provider outage (doubled per attempt, up to 10 minutes).
    payment_provider: Literal["local", "stripe", "paypal"] = "local"
    payment_hold_seconds: float = Field(48 * 3600, ge=0)
    payment_platform_fee_percent: float = Field(10, ge=0, le=100)
    payment_poll_seconds: float = Field(1, gt=0)
    payment_retry_seconds: float = Field(2, gt=0)
    # A charge waiting on its payer (3-D Secure) is cancelled after this long, or at its booking's
    # start if sooner, and the booking's place freed; a payout whose money came back is paid again
    # after this long (at once when the business changes its payout account).
    payment_action_timeout_seconds: float = Field(6 * 3600, gt=0)
    payment_payout_retry_seconds: float = Field(3 * 24 * 3600, gt=0)
    stripe_webhook_secret: SecretStr | None = None  # verifies POST /v1/webhooks/stripe (Stripe's `whsec_...`)
    # Stripe Connect signs the events of connected accounts (payouts to their banks) on the Connect
    # endpoint with its own secret: POST /v1/webhooks/stripe accepts either.
    stripe_connect_webhook_secret: SecretStr | None = None
    # payment_provider=stripe: the secret key, the API's address (unset: Stripe's; tests point it at
    # a stand-in), and whether payouts are made by us after each transfer (Connect accounts on manual
    # payouts) or by Stripe's schedule.
    stripe_api_key: SecretStr | None = None
    stripe_api_base: str | None = Field(None, pattern=r"^https?://")
    stripe_manual_payouts: bool = False
    # payment_provider=paypal: the REST app's client id and secret, and the API's address (unset:
    # PayPal's live API; https://api-m.sandbox.paypal.com for the sandbox; tests point it at a stand-in).
    paypal_client_id: str | None = None
    paypal_client_secret: SecretStr | None = None
    paypal_api_base: str | None = Field(None, pattern=r"^https?://")
    # The id PayPal gave the app's webhook (`POST /v1/webhooks/paypal`): PayPal's
    # verify-webhook-signature API checks each webhook against it.
    paypal_webhook_id: str | None = Field(None, min_length=1, max_length=64)
    # Signs the local provider's webhooks (generated under the data dir when unset).
    local_payment_webhook_secret: SecretStr | None = Field(None, min_length=16)
    metrics_port: int | None = Field(None, ge=0, le=65535)  # Prometheus /metrics; unset: not served
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # The event loop `petplatform run` serves on: uvloop (libuv), or asyncio's own.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    log_json: bool = True

    @field_validator("edge_key")
    @classmethod
    def _edge_key_is_a_header_value(cls, key: SecretStr | None) -> SecretStr | None:
        # It travels in call metadata: a stray newline (a secret file's last line) would fail every call.
        if key is not None and not all("!" <= c <= "~" for c in key.get_secret_value()):
            raise ValueError("must be printable ASCII without spaces or line breaks")
        return key

    @field_validator("mfa_encryption_key", "mfa_previous_encryption_keys")
    @classmethod
    def _aes_256_keys(cls, keys: SecretStr | list[SecretStr] | None) -> SecretStr | list[SecretStr] | None:
        for key in keys if isinstance(keys, list) else [keys] if keys else []:
            try:
                raw = base64.b64decode(key.get_secret_value(), validate=True)
            except ValueError:
                raw = b""
            if len(raw) != 32:
                raise ValueError("must be base64 of 32 bytes (openssl rand -base64 32)")
        return keys

    @model_validator(mode="after")
    def _real_profile_needs_infrastructure(self) -> Settings:
        if self.profile == "real":
            needed = ("database_url", "amqp_url", "redis_url", "s3_endpoint", "edge_key", "page_token_key",
                      "mfa_encryption_key")
            missing = [f"{ENV_PREFIX}{n.upper()}" for n in needed
                       if not getattr(self, n)]
            if missing:
                raise ValueError(f"profile 'real' needs {', '.join(missing)}")
            if self.dev_oidc:
                raise ValueError("PETPLATFORM_DEV_OIDC lets anyone sign in as anyone: not in profile 'real'")
            if self.bcrypt_rounds < 12:
                raise ValueError("PETPLATFORM_BCRYPT_ROUNDS below 12 is for the embedded profile only")
        if self.chat_store == "mongodb" and not self.mongodb_url:
            raise ValueError("chat_store 'mongodb' needs PETPLATFORM_MONGODB_URL")
        needs = {"fcm": ("fcm_project_id", "fcm_service_account_file"),
                 "apns": ("apns_team_id", "apns_key_id", "apns_private_key_file", "apns_topic"),
                 "twilio": ("twilio_account_sid", "twilio_auth_token", "twilio_from_number")}
        for provider in (self.notification_push_provider, self.notification_ios_push_provider,
                         self.notification_sms_provider):
            missing = [f"{ENV_PREFIX}{n.upper()}" for n in needs.get(provider, ())
                       if not (v := getattr(self, n)) or (isinstance(v, SecretStr) and not v.get_secret_value())]
            if missing:
                raise ValueError(f"provider {provider!r} needs {', '.join(missing)}")
        if self.payment_provider == "stripe" and not (self.stripe_api_key and self.stripe_webhook_secret):
            raise ValueError("payment_provider 'stripe' needs PETPLATFORM_STRIPE_API_KEY and "
                             "PETPLATFORM_STRIPE_WEBHOOK_SECRET")
        if self.payment_provider == "paypal" and not (self.paypal_client_id and self.paypal_client_secret
                                                      and self.paypal_webhook_id):
            raise ValueError("payment_provider 'paypal' needs PETPLATFORM_PAYPAL_CLIENT_ID, "
                             "PETPLATFORM_PAYPAL_CLIENT_SECRET and PETPLATFORM_PAYPAL_WEBHOOK_ID")
        return self


# Where the edge serves the local payment provider's bank page (3-D Secure), the `action_url` of its charges.
LOCAL_BANK_PATH = "/dev-bank/3ds"


def local_secret(path: Path) -> bytes:
    """A secret made once under the data dir (embedded profile), so the processes sharing that dir
    agree on it: the first to create the file wins, mode 0600."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_bytes()
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_hex(32).encode())
    return path.read_bytes()


class ConfigError(Exception):
    """Bad configuration, with a message that names the variables to fix."""


def load_settings(**overrides) -> Settings:
    try:
        return Settings(**overrides)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            name = f"{ENV_PREFIX}{field.upper()}" if err["loc"] else field
            lines.append(f"  {name}: {err['msg']}")
        raise ConfigError("invalid configuration:\n" + "\n".join(lines)) from None
