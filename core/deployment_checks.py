"""Whether a valid configuration is safe to run: values that clash, servers reachable from other machines
while open to all, and what a public deployment still lacks. Each refusal is one sentence naming the variable.
"""

import ipaddress
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from core.errors import ConfigError

if TYPE_CHECKING:  # core.settings calls refusal(); the import would go round in a circle
    from core.settings import Settings

WILDCARD_HOSTS = {"", "0.0.0.0", "::"}


def refusal(settings: "Settings") -> str | None:
    """Why Nurture must not start with these settings; None when it may."""
    oidc = _oidc_configured()
    if found := conflicts(settings) + exposure_problems(settings, dashboard_oidc=oidc):
        return found[0]
    if problems := production_problems(settings, dashboard_oidc=oidc):
        return (f"PUBLIC_BASE_URL {settings.public_base_url} is public, so Nurture refuses to start "
                f"without: {'; '.join(problems)}.")
    return None


PLACEHOLDER_SECRETS = {"changethis", "changeme", "secret", "password", "test", "dev"}
# The README's samples too: its .env for a server is pasted, then edited, and a line left as written must not start.
PLACEHOLDER_SENDER_DOMAINS = ("example.com", "example.org", "example.net", "resend.dev", "localhost",
                              "yourdomain.com", "your-verified-domain.com", "your-site.com")
README_POSTAL_ADDRESS = "Your Company, 1 High Street, Town, Postcode, Country"


def _unset_or_sample(secret: str) -> bool:
    """A sample secret is the first guess anyone makes, and "<a long passphrase>" is printed in the README:
    neither locks anything."""
    return not secret or secret.lower() in PLACEHOLDER_SECRETS or _left_as_written(secret)


def _left_as_written(value: str) -> bool:
    """A "<what to put here>" line of the README's .env, not filled in."""
    return value.startswith("<") and value.endswith(">")


def _dashboard_open(settings: "Settings", dashboard_oidc: bool) -> bool:
    """Neither a password nor OIDC, or a sample password (which lets anyone in even beside OIDC)."""
    password = settings.dashboard_password
    return (not password and not dashboard_oidc) or (bool(password) and _unset_or_sample(password))


def production_problems(settings: "Settings", *, dashboard_oidc: bool = False) -> list[str]:
    """What a public deployment (PUBLIC_BASE_URL not localhost) still lacks; empty when it is safe."""
    if not settings.is_production:
        return []
    problems = []
    if _unset_or_sample(settings.secret_key) or len(settings.secret_key) < 16:
        problems.append("SECRET_KEY (at least 16 random characters)")
    if _unset_or_sample(settings.webhook_secret):
        problems.append("WEBHOOK_SECRET")
    if _dashboard_open(settings, dashboard_oidc):
        problems.append("dashboard authentication (a DASHBOARD_PASSWORD that is not a sample such as 'password', "
                        "or [auth] in .streamlit/secrets.toml)")
    if dashboard_oidc and settings.dashboard_allow_list.empty:
        # Google and most providers admit anyone with an account: every lead's details would be theirs to read.
        problems.append("DASHBOARD_ALLOWED_EMAILS (who may sign in through [auth]: addresses, @yourdomain.com, "
                        "or * for anyone your sign-in provider admits)")
    sender = settings.resend_from_email.rpartition("<")[2].rstrip(">").strip()
    domain = sender.rpartition("@")[2].lower()
    if "@" not in sender or any(domain == d or domain.endswith("." + d) for d in PLACEHOLDER_SENDER_DOMAINS):
        problems.append("RESEND_FROM_EMAIL (a real sender on your verified domain)")
    # The defaults are samples: every footer would carry a made-up address and every button a dead link.
    postal_address = settings.postal_address.strip()
    if not postal_address or postal_address in {type(settings).model_fields["postal_address"].default,
                                                README_POSTAL_ADDRESS}:
        problems.append("POSTAL_ADDRESS (your real postal address, which every email's footer must show)")
    booking_host = (urlparse(settings.booking_url).hostname or "").lower()
    if any(booking_host == d or booking_host.endswith("." + d) for d in PLACEHOLDER_SENDER_DOMAINS):
        problems.append("BOOKING_URL (where the emails' booking buttons lead)")
    return problems


def conflicts(settings: "Settings") -> list[str]:
    """Values that are each valid but cannot work together."""
    found = []
    if settings.resend_api_key and not settings.resend_from_email:
        found.append("RESEND_FROM_EMAIL is empty while RESEND_API_KEY is set: every email needs a sender, "
                     "such as 'Acme Team <team@yourdomain.com>'.")
    if bool(settings.notion_token) != bool(settings.notion_email_sequence_db_id):
        given, missing = (("NOTION_TOKEN", "NOTION_EMAIL_SEQUENCE_DB_ID") if settings.notion_token
                          else ("NOTION_EMAIL_SEQUENCE_DB_ID", "NOTION_TOKEN"))
        found.append(f"{missing} is empty while {given} is set: the Notion mirror needs both (or neither, "
                     "to run without Notion).")
    elif settings.notion_businessx_db_id and not settings.notion_token:
        # Read only by the mirror, to link each lead to its BusinessX row: alone it would do nothing, unsaid.
        found.append("NOTION_BUSINESSX_DB_ID is set while NOTION_TOKEN and NOTION_EMAIL_SEQUENCE_DB_ID are empty: "
                     "the BusinessX link is part of the Notion mirror, which needs both.")
    hosts = {_loopback(settings.api_host), _loopback(settings.dashboard_host)}
    if settings.api_port == settings.dashboard_port and (len(hosts) == 1 or hosts & WILDCARD_HOSTS):
        found.append(f"API_PORT and DASHBOARD_PORT are both {settings.api_port}: the intake API and the dashboard "
                     "need a port each.")
    return found


def exposure_problems(settings: "Settings", *, dashboard_oidc: bool = False) -> list[str]:
    """A server listening beyond this machine must not be open to whoever reaches it, even when
    PUBLIC_BASE_URL still says localhost (a cloud VM with API_HOST=0.0.0.0, say)."""
    problems = []
    if not is_loopback(settings.api_host) and _unset_or_sample(settings.webhook_secret):
        problems.append(f"API_HOST {settings.api_host} lets other machines reach the intake, so Nurture refuses to "
                        "start without a WEBHOOK_SECRET that is not a sample such as 'changeme' (or set "
                        "API_HOST=127.0.0.1 behind a proxy).")
    if problem := dashboard_exposure(settings, settings.dashboard_host, dashboard_oidc=dashboard_oidc):
        problems.append(problem)
    return problems


def dashboard_exposure(settings: "Settings", host: str, *, dashboard_oidc: bool,
                       named: str = "DASHBOARD_HOST") -> str | None:
    """Why a dashboard listening on `host` must not start: reachable from other machines and open to all."""
    if is_loopback(host) or not _dashboard_open(settings, dashboard_oidc):
        return None
    return (f"{named} {host} lets other machines reach the dashboard, so Nurture refuses to start without a "
            "DASHBOARD_PASSWORD that is not a sample such as 'password' (or [auth] in .streamlit/secrets.toml).")


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach a server listening on `host`."""
    host = host.strip().lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name or a wildcard: reachable from elsewhere


def _loopback(host: str) -> str:
    """One name for this machine's IPv4 loopback, so "localhost" and "127.0.0.1" are seen to clash."""
    return "127.0.0.1" if host.strip().lower() == "localhost" else host.strip()



def _oidc_configured() -> bool:
    """Whether Streamlit's secrets file holds an `auth` table, as the dashboard's gate asks `"auth" in st.secrets`.

    Parsed as Streamlit parses it (tomllib), not searched for the text "[auth]": a commented-out "# [auth]"
    made start-up take an exposed dashboard as locked by OIDC while the gate, finding no auth table, let
    anyone in. A file that is not TOML holds no sign-in either.
    """
    path = Path(".streamlit/secrets.toml")
    if not path.is_file():
        return False
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"The Streamlit secrets file {path} cannot be read: {exc.strerror or exc}.") from None
    try:
        # Bytes not in UTF-8 are Streamlit's to complain about, not a traceback for every command.
        secrets = tomllib.loads(raw.decode("utf-8", errors="replace"))
    except tomllib.TOMLDecodeError:
        return False
    return isinstance(secrets.get("auth"), dict)
