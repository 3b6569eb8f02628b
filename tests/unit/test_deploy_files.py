"""deploy/ and the README's deployment steps agree with each other and with the app (no nginx or systemd in CI)."""

import configparser
import re
from pathlib import Path

import pytest

from core.api.intake import MAX_BODY
from core.errors import ConfigError
from core.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
NGINX = (ROOT / "deploy" / "nginx-nurture.conf").read_text()
UNITS = sorted((ROOT / "deploy").glob("*.service"))


def deploy_steps() -> list[str]:
    """The shell lines of the README's "Deploying to a Debian VPS" block, in order."""
    section = (ROOT / "README.md").read_text().split("## Deploying to a Debian VPS", 1)[1]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]


def step_index(steps: list[str], pattern: str) -> int:
    return next(i for i, line in enumerate(steps) if re.search(pattern, line))


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(path)
    return parser


def test_every_folder_a_unit_may_write_is_made_before_the_units_start():
    # systemd refuses to start a unit whose ReadWritePaths= names a missing path (226/NAMESPACE),
    # and nothing else creates data/ when PostgreSQL holds the data and SECRET_KEY is set.
    steps = deploy_steps()
    start = step_index(steps, r"systemctl enable --now")
    for path in UNITS:
        for folder in unit(path)["Service"]["ReadWritePaths"].split():
            if folder.startswith("-"):
                continue
            made = step_index(steps, rf"mkdir -p [^;&]*{re.escape(folder)}(\s|$)")
            owned = step_index(steps, r"chown -R nurture:nurture /opt/nurture")
            assert made < start and made < owned, f"{path.name}: {folder} must exist, owned by nurture"


def test_the_units_run_the_clone_the_readme_makes_as_the_user_it_makes():
    for path in UNITS:
        service = unit(path)["Service"]
        assert service["WorkingDirectory"] == "/opt/nurture"
        # The app reads /opt/nurture/.env itself; systemd's own reading of it (which keeps a trailing
        # "# comment" in the value) would reach the environment and win over the app's.
        assert "EnvironmentFile" not in service
        assert service["ExecStart"].startswith("/opt/nurture/.venv/bin/")
        assert service["User"] == service["Group"] == "nurture"


def test_the_certificate_is_obtained_before_the_site_that_names_its_files_is_enabled():
    # nginx -t, and so certbot --nginx, fail on a site whose ssl_certificate files do not exist yet.
    steps = deploy_steps()
    assert re.search(r"ssl_certificate\s+/etc/letsencrypt/live/", NGINX)
    assert step_index(steps, r"certbot certonly") < step_index(steps, r"ln -s /etc/nginx/sites-available/nurture")


def test_nginx_limits_bodies_exactly_as_the_app_does():
    [limit] = re.findall(r"client_max_body_size\s+(\d+)k;", NGINX)
    assert int(limit) * 1024 == MAX_BODY


def test_nginx_serves_only_the_public_paths_and_never_the_dashboard():
    proxied = re.findall(r"location\s+(=\s+)?(\S+)\s*\{[^}]*proxy_pass http://127\.0\.0\.1:8000;", NGINX)
    assert sorted(path for _, path in proxied) == [
        "/health", "/unsubscribe/", "/webhook/christmas-signup", "/webhook/resend"]
    assert "8501" not in NGINX.split("# The dashboard", 1)[0]
    assert re.search(r"location / \{ return 404; \}", NGINX)


def test_nginx_logs_no_unsubscribe_token():
    # The app keeps uvicorn's access log off because each line would hold an unsubscribe link's token, which
    # unsubscribes whoever it names; nginx's own access log wrote the same path for every click.
    [block] = re.findall(r"location /unsubscribe/\s*\{([^}]*)\}", NGINX)
    assert re.search(r"\baccess_log off;", block)


def test_nginx_listens_on_ipv6_wherever_it_listens_on_ipv4():
    for port in re.findall(r"listen (\d+)", NGINX):
        assert re.search(rf"listen \[::\]:{port}\b", NGINX), f"port {port} has no IPv6 listener"


def test_files_the_services_create_are_not_readable_by_other_local_users():
    for path in UNITS:
        umask = int(unit(path)["Service"]["UMask"], 8)
        assert umask & 0o007 == 0o007, f"{path.name}: the database and backups would be world-readable"


def test_plain_http_is_redirected_without_turning_a_signup_post_into_a_get():
    assert re.search(r"return 308 https://\$host\$request_uri;", NGINX)
    assert "return 301" not in NGINX


def test_the_files_that_hold_secrets_are_never_committed_by_accident():
    # .env holds the API keys, data/ the generated SECRET_KEY, and .streamlit/secrets.toml the OIDC
    # client secret and cookie key that the README has the operator write there.
    ignored = {line.strip() for line in (ROOT / ".gitignore").read_text().splitlines()}
    assert {".env", "data/", ".streamlit/secrets.toml"} <= ignored


def readme_env_file() -> str:
    """The .env the README's deployment steps write (its heredoc), as printed."""
    section = (ROOT / "README.md").read_text().split("## Deploying to a Debian VPS", 1)[1]
    return section.split("<<'ENV'\n", 1)[1].split("\nENV\n", 1)[0] + "\n"


def test_the_readme_env_file_does_not_start_until_every_sample_in_it_is_replaced(tmp_path, monkeypatch):
    # Pasted, then only partly edited: a "<a long passphrase>" left as written was taken for a real password,
    # so the service started with secrets printed in the README. Only the Resend lines are filled in here
    # (its "re_…" is refused on its own, as no key Resend issues).
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)  # no .streamlit/secrets.toml: no OIDC
    env_file = tmp_path / ".env"
    env_file.write_text(readme_env_file().replace("re_…", "re_live_key").replace("whsec_…", "whsec_c2VjcmV0"))
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=str(env_file))
    for sample in ("SECRET_KEY", "WEBHOOK_SECRET", "dashboard authentication", "RESEND_FROM_EMAIL", "POSTAL_ADDRESS",
                   "BOOKING_URL"):
        assert sample in str(caught.value)


def test_the_worker_stops_within_the_time_systemd_gives_it():
    # Stopping, the worker waits for the API's requests in flight (uvicorn's grace), then the intake writer
    # (its lifespan shutdown), all within its join of the API thread; the jobs' last pass and the leases'
    # release follow. Past TimeoutStopSec systemd kills the worker instead of letting it end cleanly.
    from core import intake, worker

    stop_seconds = int(unit(ROOT / "deploy" / "nurture-worker.service")["Service"]["TimeoutStopSec"])
    assert worker.API_GRACE_SECONDS + intake.STOP_SECONDS < worker.API_JOIN_SECONDS
    assert worker.API_JOIN_SECONDS <= stop_seconds / 2, "half of systemd's time is left for the jobs' last pass"
