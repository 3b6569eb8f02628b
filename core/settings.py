"""One validated Settings. Every environment variable Nurture reads is declared here."""

import math
from functools import cached_property
from pathlib import Path
from urllib.parse import urlparse

from pydantic import ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from core.errors import ConfigError

# Values of these variables may hold credentials, so errors never echo them.
_SECRET_WORDS = ("KEY", "SECRET", "TOKEN", "PASSWORD", "URL")
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}
DEFAULT_DATA_DIR = "data"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str = "sqlite:///data/nurture.db"
    testing_mode: bool = False

    resend_api_key: str = ""
    resend_from_email: str = ""
    resend_rate_limit: float = 2.0
    resend_webhook_secret: str = ""

    notion_token: str = ""
    notion_email_sequence_db_id: str = ""
    notion_businessx_db_id: str = ""
    notion_api_url: str = ""

    discord_webhook_url: str = ""

    webhook_secret: str = ""
    intake_rate_limit: int = 0
    cors_origins: str = ""

    public_base_url: str = "http://localhost:8000"
    dashboard_url: str = "http://localhost:8501"
    secret_key: str = ""
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8501
    dashboard_password: str = ""
    postal_address: str = "Nurture Systems Ltd, 1 Example Street, London EC1A 1AA, United Kingdom"
    booking_url: str = "https://example.com/book"
    log_format: str = "text"
    log_level: str = "INFO"
    data_dir: str = DEFAULT_DATA_DIR

    @field_validator("data_dir", mode="before")
    @classmethod
    def _data_dir(cls, value):
        # DATA_DIR= (an unset variable in a compose file, say) means the default, not the current folder.
        return (value.strip() or DEFAULT_DATA_DIR) if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        # A stray space from a copied line would name another SQLite file ("nurture.db ") or break the URL.
        value = value.strip()
        try:
            url = make_url(value)
        except (ArgumentError, ValueError):
            url = None
        driver = url.drivername.lower() if url else ""
        if driver not in {"sqlite", "postgresql", "postgresql+psycopg"}:
            raise ValueError("must be a URL starting with sqlite:/// or postgresql+psycopg://")
        value = driver + value[len(driver):]  # SQLAlchemy only knows lower-case driver names
        if driver == "sqlite" and _in_memory(url):
            raise ValueError("needs a file path such as sqlite:///data/nurture.db, not an in-memory database, "
                             "because the worker, the API and the dashboard are separate processes sharing it")
        if driver.startswith("postgresql") and not url.host and "host" not in url.query:
            raise ValueError("a PostgreSQL URL needs a host, e.g. postgresql+psycopg://user@127.0.0.1/nurture")
        if url.port is not None and not 1 <= url.port <= 65535:
            raise ValueError("its port must be a number from 1 to 65535")
        if driver == "postgresql":
            value = "postgresql+psycopg" + value[len("postgresql"):]
        return value

    @field_validator("public_base_url")
    @classmethod
    def _web_address(cls, value: str) -> str:
        # It starts every unsubscribe link, and its host decides whether the production checks apply.
        value = value.strip()
        parsed = urlparse(value)
        try:
            port_ok = parsed.port != 0
        except ValueError:
            port_ok = False
        if parsed.scheme not in {"http", "https"} or not parsed.hostname or not port_ok:
            raise ValueError("must be an http:// or https:// address with a host, e.g. https://nurture.example.org")
        return parsed.scheme + value[len(parsed.scheme):]  # urlparse lower-cased the scheme

    @field_validator("resend_rate_limit")
    @classmethod
    def _positive_rate(cls, value: float) -> float:
        # NaN compares false with everything, so it would switch the token bucket off.
        if not math.isfinite(value) or value <= 0:
            raise ValueError("must be a finite positive number of requests per second")
        return value

    @field_validator("intake_rate_limit")
    @classmethod
    def _non_negative(cls, value: int) -> int:
        if value < 0:
            raise ValueError("must be 0 (off) or a positive number of signups per minute")
        return value

    @field_validator("api_port", "dashboard_port")
    @classmethod
    def _port(cls, value: int) -> int:
        if not 1 <= value <= 65535:
            raise ValueError("must be a port number from 1 to 65535")
        return value

    @field_validator("log_format")
    @classmethod
    def _log_format(cls, value: str) -> str:
        if value not in {"text", "json"}:
            raise ValueError("must be 'text' or 'json'")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        # logging only knows upper-case names: "debug" would crash the worker after start-up.
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError("must be one of " + ", ".join(LOG_LEVELS))
        return level

    @cached_property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def dry_run(self) -> bool:
        return not self.resend_api_key

    @property
    def notion_configured(self) -> bool:
        return bool(self.notion_token and self.notion_email_sequence_db_id)

    @property
    def discord_configured(self) -> bool:
        return bool(self.discord_webhook_url)

    @property
    def is_production(self) -> bool:
        return urlparse(self.public_base_url).hostname not in LOCAL_HOSTS

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]


def _in_memory(url) -> bool:
    """Whether a SQLite URL names a database that lives only inside the one process that opens it."""
    database = url.database or ""
    return database in {"", ":memory:"} or database.startswith("file::memory:") or url.query.get("mode") == "memory"


PLACEHOLDER_SECRETS = {"changethis", "changeme", "secret", "password", "test", "dev"}
PLACEHOLDER_SENDER_DOMAINS = ("example.com", "example.org", "example.net", "resend.dev", "localhost")


def production_problems(settings: Settings, *, dashboard_oidc: bool = False) -> list[str]:
    """What a public deployment (PUBLIC_BASE_URL not localhost) still lacks; empty when it is safe."""
    if not settings.is_production:
        return []
    problems = []
    if not settings.secret_key or settings.secret_key.lower() in PLACEHOLDER_SECRETS or len(settings.secret_key) < 16:
        problems.append("SECRET_KEY (at least 16 random characters)")
    if not settings.webhook_secret or settings.webhook_secret.lower() in PLACEHOLDER_SECRETS:
        problems.append("WEBHOOK_SECRET")
    if not settings.dashboard_password and not dashboard_oidc:
        problems.append("dashboard authentication (DASHBOARD_PASSWORD, or [auth] in .streamlit/secrets.toml)")
    sender = settings.resend_from_email.rpartition("<")[2].rstrip(">").strip()
    domain = sender.rpartition("@")[2].lower()
    if "@" not in sender or any(domain == d or domain.endswith("." + d) for d in PLACEHOLDER_SENDER_DOMAINS):
        problems.append("RESEND_FROM_EMAIL (a real sender on your verified domain)")
    return problems


def load_settings(**overrides) -> Settings:
    """Read and validate the configuration, or raise ConfigError naming the variable at fault."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        variable = str(first["loc"][0]).upper() if first["loc"] else "configuration"
        reason = first["msg"].removeprefix("Value error, ")
        shown = "" if any(w in variable for w in _SECRET_WORDS) else f" (got {first.get('input')!r})"
        raise ConfigError(f"{variable} is invalid: {reason}{shown}.") from None
    except UnicodeDecodeError as exc:
        env_file = overrides.get("_env_file", Settings.model_config["env_file"])
        line = exc.object[:exc.start].count(b"\n") + 1
        raise ConfigError(f"The settings file {env_file} is not UTF-8 text (line {line}): save it as UTF-8.") from None
    problems = production_problems(settings, dashboard_oidc=_oidc_configured())
    if problems:
        raise ConfigError(f"PUBLIC_BASE_URL {settings.public_base_url} is public, so Nurture refuses to start "
                          f"without: {'; '.join(problems)}.")
    return settings


def _oidc_configured() -> bool:
    # Streamlit reads OIDC settings from its secrets file; core only needs to know it is there.
    path = Path(".streamlit/secrets.toml")
    return path.exists() and "[auth]" in path.read_text(encoding="utf-8")
