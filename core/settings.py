"""One validated Settings. Every environment variable Nurture reads is declared here."""

import math
import os
import re
from functools import cached_property
from pathlib import Path
from urllib.parse import urlparse

from dotenv.parser import parse_stream
from email_validator import EmailNotValidError, validate_email
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from core import allowlist, deployment_checks
from core.errors import ConfigError

# Values of these variables may hold credentials, so errors never echo them.
_SECRET_WORDS = ("KEY", "SECRET", "TOKEN", "PASSWORD", "URL")
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}
DEFAULT_DATA_DIR = "data"
MIN_RESEND_RATE = 0.1  # requests a second: one every ten seconds
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# A sender as Resend takes it: "team@acme.com" or "Acme Team <team@acme.com>", one address only.
_SENDER = re.compile(r"\s*(?:(?P<name>[^<>]*?)\s*<(?P<address>[^<>\s]+)>|(?P<bare>[^<>\s]+))\s*")
# The id at the end of a Notion link's last path segment ("…/Email-Sequence-0123…cdef?v=…"), plain or dashed.
_NOTION_LINK_ID = re.compile(r"([0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$", re.I)


class Settings(BaseSettings):
    # Fields that hold credentials (a PostgreSQL password can sit in DATABASE_URL, Discord's webhook URL is
    # its key) are left out of repr(), so a settings object in a log line or a traceback shows none of them.
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str = Field("sqlite:///data/nurture.db", repr=False)
    testing_mode: bool = False

    resend_api_key: str = Field("", repr=False)
    resend_from_email: str = ""
    resend_rate_limit: float = 2.0
    resend_webhook_secret: str = Field("", repr=False)
    # The SDK reads RESEND_API_URL from the process environment only; declared here so that a .env line
    # reaches it too (ResendMailer hands it over), as it did under the original stack's load_dotenv.
    resend_api_url: str = ""

    notion_token: str = Field("", repr=False)
    notion_email_sequence_db_id: str = ""
    notion_businessx_db_id: str = ""
    notion_api_url: str = ""

    discord_webhook_url: str = Field("", repr=False)

    webhook_secret: str = Field("", repr=False)
    intake_rate_limit: int = 0
    cors_origins: str = ""

    public_base_url: str = "http://localhost:8000"
    dashboard_url: str = ""  # where Discord alerts link to; empty: http://localhost:DASHBOARD_PORT
    secret_key: str = Field("", repr=False)
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8501
    dashboard_password: str = Field("", repr=False)
    # Who may use the dashboard after an OIDC sign-in (core/allowlist.py); empty: anyone the provider admits.
    dashboard_allowed_emails: str = ""
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

    @field_validator("secret_key", "webhook_secret", "dashboard_password", "resend_api_key", "resend_webhook_secret",
                     "notion_token")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        # Blank space counts as set, yet is no secret: WEBHOOK_SECRET=" " refused the header (HTTP strips it) and let
        # anyone sign with " ".
        if value and not value.strip():
            raise ValueError("is only blank space: leave it empty, or give it a real value")
        return value

    @field_validator("resend_api_key", "notion_token")
    @classmethod
    def _header_token(cls, value: str) -> str:
        # Each travels in an Authorization header: a space, a line break or a letter beyond ASCII inside it
        # failed every call before it left the machine, which the adapters took for an outage, for hours.
        value = value.strip()
        if not (value.isascii() and value.isprintable()) or any(c.isspace() for c in value):
            raise ValueError("must be the key exactly as issued: printable ASCII, with no spaces or line breaks")
        return value

    @field_validator("resend_webhook_secret")
    @classmethod
    def _signing_secret(cls, value: str) -> str:
        # Checked where every process reads it, not only where the API is built: a "whsec_…" left as the README
        # prints it let the dashboard and CLI start, and failed every Resend event later. svix's verifier is
        # standardwebhooks' underneath; this imports that part alone (svix itself takes half a second).
        from standardwebhooks.webhooks import Webhook

        value = value.strip()
        if value:
            try:
                Webhook(value)
            except Exception:
                raise ValueError("must be Resend's signing secret as issued (whsec_ then base64)") from None
        return value

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
        if driver not in {"sqlite", "postgres", "postgresql", "postgresql+psycopg"}:
            raise ValueError("must be a URL starting with sqlite:/// or postgresql+psycopg:// (or postgresql://)")
        value = driver + value[len(driver):]  # SQLAlchemy only knows lower-case driver names
        if driver == "postgres":  # libpq's short scheme, as hosting providers hand out
            driver, value = "postgresql", "postgresql" + value[len("postgres"):]
            url = make_url(value)
        if driver == "sqlite" and _in_memory(url):
            raise ValueError("needs a file path such as sqlite:///data/nurture.db, not an in-memory database, "
                             "because the worker, the API and the dashboard are separate processes sharing it")
        if driver == "sqlite" and (problem := _sqlite_option_problem(make_url(value))):
            raise ValueError(f"its options after '?' cannot be used ({problem})")
        if driver.startswith("postgresql") and not url.host and "host" not in url.query:
            raise ValueError("a PostgreSQL URL needs a host, e.g. postgresql+psycopg://user@127.0.0.1/nurture")
        if url.port is not None and not 1 <= url.port <= 65535:
            raise ValueError("its port must be a number from 1 to 65535")
        if driver == "postgresql":
            value = "postgresql+psycopg" + value[len("postgresql"):]
        return value

    @field_validator("notion_email_sequence_db_id", "notion_businessx_db_id")
    @classmethod
    def _notion_database_id(cls, value: str) -> str:
        # Notion's "Copy link" gives the database's address, not its id: the id is taken from it, where
        # before every call asked Notion for a database named by the whole link, and failed.
        value = value.strip()
        if "/" not in value:
            return value
        # An address bar that hides the scheme copies "www.notion.so/…": a link all the same.
        link = value if value.lower().startswith(("http://", "https://")) else f"https://{value}"
        found = _NOTION_LINK_ID.search(urlparse(link).path.rsplit("/", 1)[-1])
        if not found:
            raise ValueError("is a link with no database id at its end: open the database as a full page and "
                             "copy its link again, or give the 32-character id alone")
        return found.group(1)

    @field_validator("resend_from_email")
    @classmethod
    def _sender(cls, value: str) -> str:
        # Checked here, not by the first email's 422: a typo would otherwise fail every step 1.
        value = value.strip()
        if not value:
            return value
        match = _SENDER.fullmatch(value)
        try:
            validate_email(match["address"] or match["bare"], check_deliverability=False) if match else None
        except EmailNotValidError:
            match = None
        if not match:
            raise ValueError("must be one sender address, such as team@yourdomain.com or "
                             "'Acme Team <team@yourdomain.com>'")
        return value

    @field_validator("public_base_url", "booking_url", "dashboard_url", "discord_webhook_url", "notion_api_url",
                     "resend_api_url")
    @classmethod
    def _web_address(cls, value: str, info) -> str:
        # It starts every unsubscribe link (or alert link), and its host decides whether the production checks apply.
        # The side channels' URLs are checked too: a typo would otherwise show only as an endless "cannot reach".
        # The booking link is every email's button: a relative or schemeless one would be dead in every mail client.
        value = value.strip()
        if info.field_name not in {"public_base_url", "booking_url"} and not value:
            return value  # the dashboard's is filled in from DASHBOARD_PORT below; the others mean off or the default
        parsed = urlparse(value)
        try:
            port_ok = parsed.port != 0
        except ValueError:
            port_ok = False
        # urlparse drops a pasted line break or tab inside; the HTTP client would refuse it at every call.
        inside = any(c.isspace() or not c.isprintable() for c in value)
        if parsed.scheme not in {"http", "https"} or not parsed.hostname or not port_ok or inside:
            raise ValueError("must be an http:// or https:// address with a host and no spaces, "
                             "e.g. https://nurture.example.org")
        if info.field_name == "public_base_url" and ("?" in value or "#" in value):
            # Every unsubscribe link is this address, then /unsubscribe/<token>: after a query or fragment that
            # path would be no path, and each link would open the site's front page instead of unsubscribing.
            raise ValueError("must have no query or fragment ('?' or '#'), since every unsubscribe link is built on it")
        return parsed.scheme + value[len(parsed.scheme):]  # urlparse lower-cased the scheme

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        # Starlette matches the Origin header exactly, and browsers send scheme://host[:port], lower-case, and
        # nothing more: an entry with a path or a trailing slash matched no request, failing every preflight.
        return ",".join(_origin(o.strip()) for o in value.split(",") if o.strip())

    @field_validator("resend_rate_limit")
    @classmethod
    def _positive_rate(cls, value: float) -> float:
        # NaN compares false with everything, so it would switch the token bucket off; a rate near zero
        # would hold the first email for hours (Resend's plans allow 2 to 5 a second).
        if not math.isfinite(value) or value < MIN_RESEND_RATE:
            raise ValueError(f"must be a number of requests per second, at least {MIN_RESEND_RATE}")
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

    @field_validator("dashboard_allowed_emails")
    @classmethod
    def _allow_list(cls, value: str) -> str:
        allowlist.parse(value)  # a typo would lock out the person it names, or let in the wrong one
        return value.strip()

    @field_validator("log_format")
    @classmethod
    def _log_format(cls, value: str) -> str:
        value = value.strip().lower()  # as LOG_LEVEL takes any case
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

    @model_validator(mode="after")
    def _default_dashboard_url(self) -> "Settings":
        if not self.dashboard_url:
            self.dashboard_url = f"http://localhost:{self.dashboard_port}"
        return self

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

    @cached_property
    def dashboard_allow_list(self) -> allowlist.AllowList:
        return allowlist.parse(self.dashboard_allowed_emails)

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]


def _origin(entry: str) -> str:
    """One CORS_ORIGINS entry as a browser's Origin header writes it ("*" stands for any site)."""
    if entry == "*":
        return entry
    parsed = urlparse(entry)
    scheme = parsed.scheme.lower()
    try:  # browsers leave the scheme's own port out
        port = f":{parsed.port}" if parsed.port and parsed.port != {"http": 80, "https": 443}.get(scheme) else ""
    except ValueError:
        port = None
    if (scheme not in {"http", "https"} or not parsed.hostname or port is None or parsed.path
            or parsed.params or parsed.query or parsed.fragment or "@" in parsed.netloc
            or any(c.isspace() for c in entry)):
        raise ValueError(f"{entry!r} is not an origin as a browser sends it, which is a scheme and host such as "
                         "https://www.example.com (a port may follow), without a path or a trailing slash")
    host = f"[{parsed.hostname}]" if ":" in parsed.hostname else parsed.hostname
    return f"{scheme}://{host}{port}"


def _in_memory(url) -> bool:
    """Whether a SQLite URL names a database that lives only inside the one process that opens it."""
    database = url.database or ""
    return database in {"", ":memory:"} or database.startswith("file::memory:") or url.query.get("mode") == "memory"


def _sqlite_option_problem(url) -> str | None:
    """Why the SQLite driver cannot read the URL's options (?timeout=abc), if it cannot: it converts them
    only when it connects, which would end every command and the worker in a ValueError traceback."""
    try:
        url.get_dialect()().create_connect_args(url)
    except (ValueError, TypeError) as exc:
        return str(exc)
    return None


def _check_env_file(path) -> None:
    """A line of .env that cannot be parsed is skipped by the reader with a warning; refuse it instead,
    since a lost RESEND_API_KEY or WEBHOOK_SECRET would quietly change what Nurture does."""
    if not isinstance(path, str | Path):
        return
    path = Path(path)
    # Skipped by the reader as if there were no file, which would start with every default (no WEBHOOK_SECRET,
    # the dry-run mailer, another database): a .env that is there but cannot be a file is refused instead.
    if path.is_dir():
        raise ConfigError(f"The settings file {path} cannot be read: it is a folder.")
    if path.is_symlink() and not path.exists():
        raise ConfigError(f"The settings file {path} cannot be read: it links to {os.readlink(path)}, which does "
                          "not exist.")
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as stream:
        for binding in parse_stream(stream):
            if binding.error:
                name = binding.original.string.partition("=")[0].strip().removeprefix("export ").strip()
                named = f" ({name})" if name.isidentifier() else ""
                raise ConfigError(f"The settings file {path} cannot be read at line {binding.original.line}{named}: "
                                  "check for an unclosed quote.")


def load_settings(**overrides) -> Settings:
    """Read and validate the configuration, or raise ConfigError naming the variable at fault."""
    env_file = overrides.get("_env_file", Settings.model_config["env_file"])
    try:
        _check_env_file(env_file)
        settings = Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        variable = str(first["loc"][0]).upper() if first["loc"] else "configuration"
        reason = first["msg"].removeprefix("Value error, ")
        shown = "" if any(w in variable for w in _SECRET_WORDS) else f" (got {first.get('input')!r})"
        raise ConfigError(f"{variable} is invalid: {reason}{shown}.") from None
    except UnicodeDecodeError as exc:
        line = exc.object[:exc.start].count(b"\n") + 1
        raise ConfigError(f"The settings file {env_file} is not UTF-8 text (line {line}): save it as UTF-8.") from None
    except OSError as exc:  # another user's .env (chmod 600): a sentence, not the worker's traceback
        raise ConfigError(f"The settings file {env_file} cannot be read: {exc.strerror or exc}.") from None
    if refusal := deployment_checks.refusal(settings):
        raise ConfigError(refusal)
    return settings
