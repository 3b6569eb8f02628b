"""Settings: defaults, and configuration errors that name the variable in one sentence without leaking secrets."""

import re
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.settings import Settings, load_settings

SETTINGS_ENV = [name.upper() for name in Settings.model_fields]


@pytest.fixture
def env(monkeypatch):
    """A clean environment: only what the test sets is visible to Settings."""
    for name in SETTINGS_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def load(**overrides) -> Settings:
    return load_settings(_env_file=None, **overrides)


def assert_one_sentence_naming(message: str, variable: str) -> None:
    assert variable in message
    assert "\n" not in message
    assert message.endswith(".")
    assert not re.search(r"[.!?]\s+[A-Z]", message), f"more than one sentence: {message!r}"
    assert "Traceback" not in message and "validation error" not in message


def test_defaults_match_the_design(env):
    s = load()
    assert s.database_url == "sqlite:///data/nurture.db"
    assert s.testing_mode is False
    assert s.resend_api_key == "" and s.resend_from_email == ""
    assert s.resend_rate_limit == 2
    assert s.webhook_secret == ""
    assert s.intake_rate_limit == 0
    assert s.public_base_url == "http://localhost:8000"
    assert s.api_port == 8000
    assert (s.dashboard_host, s.dashboard_port) == ("127.0.0.1", 8501)
    assert s.dashboard_password == ""
    assert s.dry_run is True
    assert s.notion_configured is False
    assert s.discord_configured is False
    assert s.is_sqlite is True


def test_the_environment_overrides_the_defaults(env):
    env.setenv("TESTING_MODE", "true")
    env.setenv("API_PORT", "8123")
    env.setenv("INTAKE_RATE_LIMIT", "10")
    s = load()
    assert (s.testing_mode, s.api_port, s.intake_rate_limit) == (True, 8123, 10)


@pytest.mark.parametrize("value", ["true", "True", "1", "yes", "false", "0", "no"])
def test_testing_mode_accepts_the_usual_spellings_of_a_boolean(env, value):
    env.setenv("TESTING_MODE", value)
    assert load().testing_mode is (value.lower() in {"true", "1", "yes"})


def test_a_plain_postgresql_url_is_given_the_psycopg_driver(env):
    env.setenv("DATABASE_URL", "postgresql://nurture@db.internal:5432/nurture")
    s = load()
    assert s.database_url == "postgresql+psycopg://nurture@db.internal:5432/nurture"
    assert s.is_sqlite is False


@pytest.mark.parametrize("scheme", ["postgres", "Postgres"])
def test_libpqs_short_postgres_scheme_from_a_hosting_provider_is_accepted(env, scheme):
    env.setenv("DATABASE_URL", f"{scheme}://nurture:pw@db.internal:5432/nurture?sslmode=require")
    assert load().database_url == "postgresql+psycopg://nurture:pw@db.internal:5432/nurture?sslmode=require"


@pytest.mark.parametrize(("url", "reason"), [
    *((url, None) for url in ["mysql://root@localhost/nurture", "postgres:///nurture_without_host", "not a url at all", "nurture.db",
                              "postgresql+psycopg:///nurture_without_host", "postgresql+psycopg://n@db:port/nurture",
                              ""]),
    *((f"postgresql+psycopg://nurture:pw@db.internal:{port}/nurture", "1 to 65535") for port in ("0", "65536", "99999")),
    # Each process would get a database of its own, empty.
    *((url, "file path.*separate processes")
      for url in ["sqlite://", "sqlite:///", "sqlite:///:memory:", "sqlite:///file::memory:?uri=true",
                  "sqlite:///file:nurture?mode=memory&cache=shared&uri=true", " SQLITE:///:memory: "]),
    # Options the SQLite driver converts when it connects: a bad value was a ValueError traceback from every command.
    *((f"sqlite:////srv/n.db?{option}", "options after")
      for option in ["timeout=abc", "check_same_thread=maybe", "detect_types=x", "cached_statements=many"]),
])
def test_a_database_url_that_cannot_work_stops_start_up_with_one_sentence_naming_it(env, url, reason):
    env.setenv("DATABASE_URL", url)
    with pytest.raises(ConfigError, match=reason) as caught:
        load()
    assert_one_sentence_naming(str(caught.value), "DATABASE_URL")


@pytest.mark.parametrize("url", ["discord.com/api/webhooks/1/tok3n", "https://discord.com/api/webhooks/1/to\rk3n",
                                 "https://discord.com/api/webhooks/1/to k3n", "ftp://discord.com/api/webhooks/1/tok3n"])
def test_a_discord_webhook_url_that_cannot_work_stops_start_up_without_echoing_its_token(env, url):
    env.setenv("DISCORD_WEBHOOK_URL", url)
    with pytest.raises(ConfigError, match="https:// address with a host and no spaces") as caught:
        load()
    assert_one_sentence_naming(str(caught.value), "DISCORD_WEBHOOK_URL")
    assert "tok3n" not in str(caught.value) and "k3n" not in str(caught.value)


def test_spaces_around_a_discord_webhook_url_are_dropped(env):
    env.setenv("DISCORD_WEBHOOK_URL", " https://discord.com/api/webhooks/1/tok3n\n")
    assert load().discord_webhook_url == "https://discord.com/api/webhooks/1/tok3n"


@pytest.mark.parametrize("url", ["book.example.org/call", "javascript:alert(1)", "/book", "", "https://book.example.org/a b"])
def test_a_booking_url_that_is_no_web_address_stops_start_up_with_one_sentence_naming_it(env, url):
    # It is every email's call-to-action link: anything but an absolute http(s) address is a dead button.
    env.setenv("BOOKING_URL", url)
    with pytest.raises(ConfigError, match="https:// address with a host and no spaces") as caught:
        load()
    assert_one_sentence_naming(str(caught.value), "BOOKING_URL")


@pytest.mark.parametrize("url", [" sqlite:////srv/n.db", "sqlite:////srv/n.db ", "\tsqlite:////srv/n.db\n"])
def test_spaces_around_the_database_url_are_dropped_rather_than_naming_another_file(env, url):
    env.setenv("DATABASE_URL", url)
    assert load().database_url == "sqlite:////srv/n.db"


@pytest.mark.parametrize(
    ("url", "expected"),
    [("SQLITE:///data/x.db", "sqlite:///data/x.db"),
     ("PostgreSQL+Psycopg://n@db/nurture", "postgresql+psycopg://n@db/nurture"),
     ("POSTGRESQL://n@db/nurture", "postgresql+psycopg://n@db/nurture")],
)
def test_an_upper_case_database_scheme_is_lower_cased_for_sqlalchemy(env, url, expected):
    env.setenv("DATABASE_URL", url)
    assert load().database_url == expected


@pytest.mark.parametrize("value", ["maybe", "on-ish", "2", "tru"])
def test_a_non_boolean_testing_mode_stops_start_up_with_one_sentence_naming_it(env, value):
    env.setenv("TESTING_MODE", value)
    with pytest.raises(ConfigError) as caught:
        load()
    assert_one_sentence_naming(str(caught.value), "TESTING_MODE")


@pytest.mark.parametrize(
    "url",
    ["mysql://admin:s3cr3t-Pa55@db.example.com/nurture", "postgresql+psycopg://admin:s3cr3t-Pa55@/nurture"],
)
def test_a_rejected_database_url_never_echoes_its_password(env, url):
    env.setenv("DATABASE_URL", url)
    with pytest.raises(ConfigError) as caught:
        load()
    message = str(caught.value)
    assert "s3cr3t-Pa55" not in message
    assert "admin" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_rejected_non_secret_value_is_shown_to_help_the_operator(env):
    env.setenv("TESTING_MODE", "maybe")
    with pytest.raises(ConfigError, match="maybe"):
        load()


@pytest.mark.parametrize(
    ("variable", "value"),
    [("INTAKE_RATE_LIMIT", "-1"), ("RESEND_RATE_LIMIT", "0"), ("RESEND_RATE_LIMIT", "1e-300"),
     ("RESEND_RATE_LIMIT", "nan"),
     ("RESEND_RATE_LIMIT", "inf"), ("RESEND_RATE_LIMIT", "-inf"), ("API_PORT", "eighty"), ("API_PORT", "0"),
     ("API_PORT", "-1"), ("API_PORT", "65536"), ("API_PORT", "99999"), ("DASHBOARD_PORT", "0"),
     ("DASHBOARD_PORT", "8501x"), ("LOG_FORMAT", "xml"),
     # A sender Resend would refuse fails every email's first step; it is caught at start-up instead.
     *(("RESEND_FROM_EMAIL", v) for v in ("not-an-email", "Team <bad", "Team <team@acme.com", "a@b.co, c@d.co",
                                          "Team <team@acme.com> trailing", "team@localhost")),
     *(("DASHBOARD_URL", v) for v in ("dashboard.acme.com", "ftp://dashboard.acme.com")),
     *(("LOG_LEVEL", v) for v in ("LOUD", "verbose", "10", "")),
     # Every unsubscribe link starts with it, and its host decides whether the production checks apply.
     *(("PUBLIC_BASE_URL", v) for v in ("nurture.example.org", "nurture.example.org/path", "ftp://nurture.example.org",
                                        "https://", "https:///x", "//nurture.example.org",
                                        "https://nurture.example.org:0", "https://nurture.example.org:99999", ""))],
)
def test_other_invalid_values_are_reported_by_variable_name(env, variable, value):
    env.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load()
    assert_one_sentence_naming(str(caught.value), variable)


@pytest.mark.parametrize(("value", "expected"), [("debug", "DEBUG"), (" Warning ", "WARNING"), ("CRITICAL", "CRITICAL")])
def test_log_level_accepts_any_case_of_a_logging_level_and_stores_it_upper_case(env, value, expected):
    env.setenv("LOG_LEVEL", value)
    assert load().log_level == expected


@pytest.mark.parametrize("port", ["1", "65535"])
def test_api_port_accepts_the_whole_port_range(env, port):
    env.setenv("API_PORT", port)
    assert load().api_port == int(port)


@pytest.mark.parametrize(("value", "expected"), [("", "data"), ("   ", "data"), (" /srv/nurture ", "/srv/nurture")])
def test_an_empty_data_dir_means_the_default_rather_than_the_current_folder(env, value, expected):
    env.setenv("DATA_DIR", value)
    assert load().data_dir == expected


def test_a_dot_env_file_is_read_and_the_environment_wins_over_it(env, tmp_path):
    dot_env = tmp_path / ".env"
    dot_env.write_text("TESTING_MODE=true\nAPI_PORT=9001\n", encoding="utf-8")
    env.setenv("API_PORT", "9002")
    s = load_settings(_env_file=dot_env)
    assert (s.testing_mode, s.api_port) == (True, 9002)


@pytest.mark.parametrize("sender", ["team@acme.co.uk", "Acme Team <team@acme.co.uk>", '"Acme, Ltd" <team@acme.co.uk>',
                                    "  team@acme.co.uk  "])
def test_a_sender_is_one_address_with_or_without_a_display_name(env, sender):
    env.setenv("RESEND_FROM_EMAIL", sender)
    assert load(resend_api_key="re_live").resend_from_email == sender.strip()


def test_a_resend_key_without_a_sender_stops_start_up(env):
    env.setenv("RESEND_API_KEY", "re_live_abcdef")
    with pytest.raises(ConfigError) as caught:
        load()
    assert_one_sentence_naming(str(caught.value), "RESEND_FROM_EMAIL")
    assert "re_live_abcdef" not in str(caught.value)


@pytest.mark.parametrize(("api_host", "dashboard_host", "clash"), [
    ("127.0.0.1", "127.0.0.1", True), ("0.0.0.0", "127.0.0.1", True), ("127.0.0.1", "::", True),
    ("localhost", "127.0.0.1", True), ("127.0.0.1", "10.0.0.5", False)])
def test_the_api_and_the_dashboard_cannot_share_a_port(env, api_host, dashboard_host, clash):
    env.setenv("API_PORT", "8600")
    env.setenv("DASHBOARD_PORT", "8600")
    env.setenv("API_HOST", api_host)
    env.setenv("DASHBOARD_HOST", dashboard_host)
    env.setenv("WEBHOOK_SECRET", "w" * 24)  # reachable from elsewhere, so both are locked
    env.setenv("DASHBOARD_PASSWORD", "p" * 16)
    if not clash:
        assert load().api_port == 8600
        return
    with pytest.raises(ConfigError) as caught:
        load()
    assert_one_sentence_naming(str(caught.value), "DASHBOARD_PORT")


def test_the_dashboard_link_in_alerts_follows_the_dashboard_port_unless_given(env):
    assert load().dashboard_url == "http://localhost:8501"
    env.setenv("DASHBOARD_PORT", "18601")
    assert load().dashboard_url == "http://localhost:18601"
    env.setenv("DASHBOARD_URL", "https://nurture.acme.co.uk/dashboard")
    assert load().dashboard_url == "https://nurture.acme.co.uk/dashboard"


@pytest.mark.parametrize("line", ['RESEND_API_KEY="re_live_abcdef', "export WEBHOOK_SECRET='abc", "NOT A SETTING"])
def test_a_dot_env_line_that_cannot_be_read_stops_start_up_naming_its_line(env, tmp_path, line):
    dot_env = tmp_path / ".env"
    dot_env.write_text(f"TESTING_MODE=true\n{line}\nAPI_PORT=9001\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=dot_env)
    message = str(caught.value)
    assert_one_sentence_naming(message, str(dot_env))
    assert "line 2" in message and "re_live" not in message and "abc" not in message
    if "=" in line:
        assert line.partition("=")[0].removeprefix("export ") in message


def test_a_dot_env_file_not_in_utf8_stops_start_up_with_one_sentence_naming_the_file(env, tmp_path):
    dot_env = tmp_path / ".env"
    dot_env.write_bytes(b"TESTING_MODE=true\nPOSTAL_ADDRESS=Caf\xe9, 1 Rue Example\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=dot_env)
    assert_one_sentence_naming(str(caught.value), str(dot_env))
    assert "line 2" in str(caught.value) and caught.value.__cause__ is None


def test_a_dot_env_file_that_cannot_be_read_stops_start_up_with_one_sentence_naming_it(env, tmp_path):
    # A .env of another user's (chmod 600) gave the worker a PermissionError traceback. /proc/self/mem is
    # a file that refuses to be read even by root, who may read any file of another user's.
    dot_env = Path("/proc/self/mem")
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=dot_env)
    assert_one_sentence_naming(str(caught.value), str(dot_env))
    assert "cannot be read" in str(caught.value) and caught.value.__cause__ is None


@pytest.mark.parametrize("kind", ["folder", "link to nothing"])
def test_a_dot_env_that_is_a_folder_or_a_broken_link_stops_start_up_with_one_sentence_naming_it(env, tmp_path, kind):
    # Read as no file at all, it started with every default: no WEBHOOK_SECRET, the dry-run mailer, another database.
    dot_env = tmp_path / ".env"
    if kind == "folder":
        dot_env.mkdir()
    else:
        dot_env.symlink_to(tmp_path / "secrets" / "nurture.env")
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=dot_env)
    assert_one_sentence_naming(str(caught.value), str(dot_env))
    assert "cannot be read" in str(caught.value)


@pytest.mark.parametrize("variable", ["RESEND_API_KEY", "NOTION_TOKEN"])
@pytest.mark.parametrize("key", ["re_abc\ndef", "re_abc def", "re_abc\u20ac", "re_abc\x7f"])
def test_an_api_key_that_cannot_travel_in_a_header_stops_start_up_without_echoing_it(env, variable, key):
    # Sent as it was, every call failed before leaving the machine, and each was taken for an outage and
    # retried for hours ("Resend unreachable", "cannot reach Notion") instead of naming the key.
    env.setenv(variable, key)
    env.setenv("RESEND_FROM_EMAIL", "team@acme.org")
    env.setenv("NOTION_EMAIL_SEQUENCE_DB_ID", "db1")
    with pytest.raises(ConfigError) as caught:
        load()
    assert_one_sentence_naming(str(caught.value), variable)
    assert "abc" not in str(caught.value)


@pytest.mark.parametrize("variable", ["resend_api_key", "notion_token"])
def test_spaces_and_a_line_break_around_an_api_key_are_dropped(env, variable):
    env.setenv(variable.upper(), " re_abc123\n")
    env.setenv("RESEND_FROM_EMAIL", "team@acme.org")
    if variable == "notion_token":
        env.setenv("NOTION_EMAIL_SEQUENCE_DB_ID", "db1")
    assert getattr(load(), variable) == "re_abc123"


def test_integrations_count_as_configured_only_with_their_credentials(env):
    s = load(notion_token="secret_x", notion_email_sequence_db_id="db1", discord_webhook_url="https://discord/x",
             resend_api_key="re_test", resend_from_email="team@acme.co.uk")
    assert (s.notion_configured, s.discord_configured, s.dry_run) == (True, True, False)



@pytest.mark.parametrize(("given", "missing"), [({"notion_token": "secret_x"}, "NOTION_EMAIL_SEQUENCE_DB_ID"),
                                                ({"notion_email_sequence_db_id": "db1"}, "NOTION_TOKEN")])
def test_half_a_notion_configuration_stops_start_up_instead_of_switching_the_mirror_off(env, given, missing):
    with pytest.raises(ConfigError) as caught:
        load(**given)
    assert_one_sentence_naming(str(caught.value), missing)
    assert "secret_x" not in str(caught.value)


def test_a_businessx_database_without_the_notion_mirror_stops_start_up_instead_of_doing_nothing(env):
    with pytest.raises(ConfigError) as caught:
        load(notion_businessx_db_id="db-businessx")
    assert_one_sentence_naming(str(caught.value), "NOTION_BUSINESSX_DB_ID")
    assert "NOTION_TOKEN" in str(caught.value)
    s = load(notion_businessx_db_id="db-businessx", notion_token="secret_x", notion_email_sequence_db_id="db1")
    assert (s.notion_configured, s.notion_businessx_db_id) == (True, "db-businessx")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "nurture.internal"])
@pytest.mark.parametrize(("variable", "lock"), [("API_HOST", "WEBHOOK_SECRET"), ("DASHBOARD_HOST", "DASHBOARD_PASSWORD")])
def test_a_server_reachable_from_other_machines_must_be_locked(env, host, variable, lock):
    env.setenv(variable, host)
    with pytest.raises(ConfigError) as caught:
        load()
    assert_one_sentence_naming(str(caught.value), variable)
    assert lock in str(caught.value)
    env.setenv(lock, "a-long-enough-secret")
    assert getattr(load(), variable.lower()) == host


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_a_server_on_a_loopback_address_needs_no_lock(env, host):
    env.setenv("API_HOST", host)
    env.setenv("DASHBOARD_HOST", host)
    env.setenv("DASHBOARD_PORT", "8601")
    assert load().api_host == host


def test_cors_origins_are_a_comma_separated_list(env):
    assert load(cors_origins=" https://a.example , https://b.example,").cors_origin_list == [
        "https://a.example", "https://b.example"]


@pytest.mark.parametrize("origin", ["https://site.example/", "https://site.example/signup", "site.example",
                                    "ftp://site.example", "https://site.example?x=1", "https://"])
def test_a_cors_origin_a_browser_never_sends_stops_start_up_naming_it(env, origin):
    # A browser's Origin header is scheme://host[:port] only; an entry copied from the address bar with its
    # trailing slash matched no request, so every signup from the site failed its preflight, unsaid.
    with pytest.raises(ConfigError) as caught:
        load(cors_origins=f"https://other.example,{origin}")
    assert_one_sentence_naming(str(caught.value), "CORS_ORIGINS")
    assert repr(origin) in str(caught.value)


def test_cors_origins_are_compared_as_browsers_write_them(env):
    assert load(cors_origins="HTTPS://Site.Example:8443,https://site.example:443,http://[::1]:3000,*").cors_origin_list \
        == ["https://site.example:8443", "https://site.example", "http://[::1]:3000", "*"]


def test_a_production_deployment_without_secret_key_stops_start_up(env):
    env.setenv("PUBLIC_BASE_URL", "https://nurture.example.com")
    with pytest.raises(ConfigError) as caught:
        load()
    assert_one_sentence_naming(str(caught.value), "SECRET_KEY")


# Everything a public deployment needs: each test of the production checks changes one thing from here.
PRODUCTION_ENV = {
    "PUBLIC_BASE_URL": "https://nurture.acme.org", "SECRET_KEY": "k" * 32, "WEBHOOK_SECRET": "w" * 32,
    "DASHBOARD_PASSWORD": "a long dashboard password", "RESEND_FROM_EMAIL": "hello@acme.org",
    "POSTAL_ADDRESS": "Acme Ltd, 2 High Street, York YO1 7HH", "BOOKING_URL": "https://acme.org/book",
}


def set_production_env(env, **changes: str | None) -> None:
    """The environment of a complete public deployment, with `changes` (None: the variable unset)."""
    for name, value in {**PRODUCTION_ENV, **changes}.items():
        if value is None:
            env.delenv(name, raising=False)
        else:
            env.setenv(name, value)


@pytest.mark.parametrize(
    ("url", "production"),
    [(" https://nurture.example.org ", True), ("HTTPS://nurture.example.org/", True),
     ("http://127.0.0.1:8000", False), ("http://[::1]:8000", False), ("http://localhost", False)],
)
def test_a_public_base_url_is_tidied_and_its_host_decides_production(env, url, production):
    set_production_env(env, PUBLIC_BASE_URL=url)
    s = load()
    assert s.public_base_url.startswith("http") and s.public_base_url == s.public_base_url.strip()
    assert s.is_production is production


@pytest.mark.parametrize("url", ["https://nurture.acme.org/?utm=1", "https://nurture.acme.org/#top",
                                 "http://localhost:8000/?x", "https://nurture.acme.org/base?"])
def test_a_public_base_url_with_a_query_or_fragment_stops_start_up_since_every_unsubscribe_link_would_be_dead(
        env, url):
    # Links are the base, then /unsubscribe/<token>: after a '?' or '#' that path is no path, and the link opens '/'.
    set_production_env(env, PUBLIC_BASE_URL=url)
    with pytest.raises(ConfigError, match="query or fragment") as caught:
        load()
    assert_one_sentence_naming(str(caught.value), "PUBLIC_BASE_URL")


@pytest.mark.parametrize(("sender", "placeholder"), [
    ("Nurture <hello@example.com>", True), ("hello@mail.example.org", True), ("onboarding@resend.dev", True),
    ("no-address", True), ("hello@notexample.com", False), ("Acme <hi@example.com.au>", False),
])
def test_only_placeholder_sender_domains_are_refused_in_production(env, sender, placeholder):
    from core.deployment_checks import production_problems

    set_production_env(env)
    settings = load().model_copy(update={"resend_from_email": sender})
    assert ("RESEND_FROM_EMAIL (a real sender on your verified domain)" in production_problems(settings)) is placeholder


@pytest.mark.parametrize(("variable", "value", "refused"), [
    ("POSTAL_ADDRESS", None, True), ("POSTAL_ADDRESS", "Acme Ltd, 2 High Street, York YO1 7HH", False),
    ("POSTAL_ADDRESS", "", True), ("POSTAL_ADDRESS", "  ", True),  # an empty footer is no more lawful than the sample
    ("BOOKING_URL", None, True), ("BOOKING_URL", "https://www.example.com/book", True),
    ("BOOKING_URL", "https://acme.org/book", False),
])
def test_a_production_deployment_refuses_the_sample_footer_address_and_booking_link(env, variable, value, refused):
    set_production_env(env, **{variable: value})
    if not refused:
        assert load().is_production
        return
    with pytest.raises(ConfigError) as caught:
        load()
    assert variable in str(caught.value)


@pytest.mark.parametrize(("password", "refused"), [("password", True), ("ChangeMe", True),
                                                   ("a long dashboard password", False)])
def test_a_production_deployment_refuses_a_placeholder_dashboard_password(env, password, refused):
    from core.deployment_checks import production_problems

    set_production_env(env)
    settings = load().model_copy(update={"dashboard_password": password})
    assert any(p.startswith("dashboard authentication") for p in production_problems(settings)) is refused


@pytest.mark.parametrize(("variable", "lock"), [("API_HOST", "WEBHOOK_SECRET"), ("DASHBOARD_HOST", "DASHBOARD_PASSWORD")])
def test_a_server_reachable_from_other_machines_is_not_locked_by_a_sample_secret(env, variable, lock):
    env.setenv(variable, "0.0.0.0")
    env.setenv(lock, "ChangeThis")
    with pytest.raises(ConfigError) as caught:
        load()
    assert variable in str(caught.value) and lock in str(caught.value) and "ChangeThis" not in str(caught.value)


def test_a_streamlit_secrets_file_not_in_utf8_still_counts_its_oidc_section(env, tmp_path):
    # Reading it as text stopped every command and the worker with a UnicodeDecodeError traceback.
    set_production_env(env, DASHBOARD_PASSWORD=None, DASHBOARD_ALLOWED_EMAILS="@acme.org")  # [auth] alone locks it
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_bytes(b'[auth]\nredirect_uri = "https://caf\xe9.acme.org"\n')
    env.chdir(tmp_path)
    assert load().is_production


# Text that names [auth] without making one: Streamlit's st.secrets then has no "auth", so the dashboard's
# gate (ui/access.py) lets anyone in, and start-up must not take the dashboard as locked by OIDC.
NO_AUTH_SECTION = {
    "commented out": '# [auth]\n# redirect_uri = "https://nurture.example.org/oauth2callback"\n',
    "inside a value": 'note = "sign-in moved to [auth] later"\n',
    "a table named like it": '[authors]\nname = "x"\n',
    "not TOML at all": '[auth]\nredirect_uri = \n',
}


@pytest.mark.parametrize("text", NO_AUTH_SECTION.values(), ids=NO_AUTH_SECTION.keys())
def test_a_secrets_file_that_only_mentions_auth_does_not_let_an_open_dashboard_listen_beyond_this_machine(
        env, tmp_path, text):
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text(text, encoding="utf-8")
    env.chdir(tmp_path)
    env.setenv("DASHBOARD_HOST", "0.0.0.0")

    with pytest.raises(ConfigError) as caught:
        load()
    assert "DASHBOARD_HOST" in str(caught.value)


@pytest.mark.parametrize("text", [
    '[auth]\nredirect_uri = "https://nurture.example.org/oauth2callback"\n',
    '[auth.google]\nclient_id = "x"\n',  # providers only: TOML makes the [auth] table all the same
], ids=["auth", "named provider only"])
def test_a_real_auth_table_counts_as_the_dashboard_lock(env, tmp_path, text):
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text(text, encoding="utf-8")
    env.chdir(tmp_path)
    env.setenv("DASHBOARD_HOST", "0.0.0.0")

    assert load().dashboard_host == "0.0.0.0"


def oidc_secrets_in(folder) -> None:
    (folder / ".streamlit").mkdir()
    (folder / ".streamlit" / "secrets.toml").write_text('[auth]\nclient_id = "x"\n', encoding="utf-8")


@pytest.mark.parametrize("password", [None, "a long dashboard password"], ids=["OIDC alone", "OIDC and a password"])
def test_a_public_deployment_with_oidc_refuses_to_start_until_it_says_who_may_sign_in(env, tmp_path, password):
    # Google and most providers admit anyone with an account: without a list, every lead's details were theirs.
    set_production_env(env, DASHBOARD_PASSWORD=password)
    oidc_secrets_in(tmp_path)
    env.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load()
    assert "DASHBOARD_ALLOWED_EMAILS" in str(caught.value) and "[auth]" in str(caught.value)

    for allowed in ("mia@acme.org, @acme.org", "*"):
        env.setenv("DASHBOARD_ALLOWED_EMAILS", allowed)
        assert load().is_production


def test_without_oidc_no_allow_list_is_asked_for(env, tmp_path):
    set_production_env(env)
    env.chdir(tmp_path)
    assert load().dashboard_allow_list.empty


@pytest.mark.parametrize("value", ["mia", "mia@acme.org; tom@acme.org", "@", "@localhost", "*.acme.org"])
def test_an_allow_list_entry_that_is_no_address_or_domain_stops_start_up_naming_it(env, value):
    env.setenv("DASHBOARD_ALLOWED_EMAILS", value)
    with pytest.raises(ConfigError) as caught:
        load()
    assert_one_sentence_naming(str(caught.value), "DASHBOARD_ALLOWED_EMAILS")


@pytest.mark.parametrize(("variable", "value"), [
    ("DISCORD_WEBHOOK_URL", "discord.com/api/webhooks/1/tok3n"), ("DISCORD_WEBHOOK_URL", "https:///api/webhooks/1/tok3n"),
    ("NOTION_API_URL", "localhost:3000"), ("RESEND_API_URL", "api.resend.com"),
])
def test_a_side_channel_url_that_is_no_web_address_stops_start_up_without_echoing_it(env, variable, value):
    # Accepted, it failed only later, in every Notion sync or Discord alert, as "cannot reach" an outage.
    env.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load()
    assert_one_sentence_naming(str(caught.value), variable)
    assert value not in str(caught.value)


@pytest.mark.parametrize("variable", ["DISCORD_WEBHOOK_URL", "NOTION_API_URL", "RESEND_API_URL"])
def test_an_empty_side_channel_url_means_off_or_the_default(env, variable):
    env.setenv(variable, "")
    assert getattr(load(), variable.lower()) == ""


@pytest.mark.parametrize("variable", ["SECRET_KEY", "WEBHOOK_SECRET", "DASHBOARD_PASSWORD", "RESEND_API_KEY",
                                      "RESEND_WEBHOOK_SECRET", "NOTION_TOKEN"])
def test_a_secret_of_blank_space_stops_start_up_rather_than_count_as_set(env, variable):
    # WEBHOOK_SECRET=" " passed the production check, then refused every signup sent with the header (HTTP
    # strips its spaces) while one signed with " ", a secret anyone can guess, was accepted.
    env.setenv(variable, "  ")
    with pytest.raises(ConfigError) as caught:
        load()
    assert_one_sentence_naming(str(caught.value), variable)


@pytest.mark.parametrize(("given", "database_id"), [
    ("https://www.notion.so/acme/Email-Sequence-0123456789abcdef0123456789abcdef?v=fedcba9876543210fedcba9876543210",
     "0123456789abcdef0123456789abcdef"),
    ("https://www.notion.so/0123456789ABCDEF0123456789abcdef", "0123456789ABCDEF0123456789abcdef"),
    (" https://acme.notion.site/12345678-90ab-cdef-1234-567890abcdef ", "12345678-90ab-cdef-1234-567890abcdef"),
    ("0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef"),
    # Copied from an address bar that hides the scheme: taken whole, its "/" and "?v=" made every call a 400.
    ("www.notion.so/acme/Email-Sequence-0123456789abcdef0123456789abcdef?v=fedcba9876543210fedcba9876543210",
     "0123456789abcdef0123456789abcdef"),
])
def test_a_notion_database_link_pasted_as_its_id_gives_the_id_at_its_end(env, given, database_id):
    # Notion's "Copy link" gives an address; taken whole, every call asked for a database of that name.
    s = load(notion_token="secret_x", notion_email_sequence_db_id=given, notion_businessx_db_id=given)
    assert (s.notion_email_sequence_db_id, s.notion_businessx_db_id) == (database_id, database_id)


def test_a_notion_link_with_no_database_id_stops_start_up_naming_the_variable(env):
    env.setenv("NOTION_EMAIL_SEQUENCE_DB_ID", "https://www.notion.so/acme/Home")
    with pytest.raises(ConfigError) as caught:
        load(notion_token="secret_x")
    assert_one_sentence_naming(str(caught.value), "NOTION_EMAIL_SEQUENCE_DB_ID")


def test_no_credential_shows_in_the_settings_repr(env):
    # A Settings object in a log line or a traceback's locals must not carry the keys with it.
    secrets = {"DATABASE_URL": "postgresql+psycopg://nurture:pg-pass-1@db.internal/nurture",
               "RESEND_API_KEY": "re_key_2", "RESEND_FROM_EMAIL": "hello@acme.org", "RESEND_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
               "NOTION_TOKEN": "ntn_4", "NOTION_EMAIL_SEQUENCE_DB_ID": "a" * 32,
               "DISCORD_WEBHOOK_URL": "https://discord.com/api/webhooks/1/tok5", "WEBHOOK_SECRET": "hook-6",
               "SECRET_KEY": "key-7" * 4, "DASHBOARD_PASSWORD": "pass-8"}
    for name, value in secrets.items():
        env.setenv(name, value)
    settings = load()
    shown = repr(settings) + str(settings)
    for value in ("pg-pass-1", "re_key_2", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "ntn_4", "tok5", "hook-6", "key-7", "pass-8"):
        assert value not in shown
    assert "hello@acme.org" in shown  # the rest is still there to read


@pytest.mark.parametrize("value", ["whsec_…", "whsec_", "whsec_not base64!"])
def test_a_resend_signing_secret_that_is_not_one_stops_start_up_without_echoing_it(env, value):
    env.setenv("RESEND_WEBHOOK_SECRET", value)
    with pytest.raises(ConfigError) as caught:
        load()
    assert_one_sentence_naming(str(caught.value), "RESEND_WEBHOOK_SECRET")
    assert "got" not in str(caught.value) and "not base64!" not in str(caught.value)


def test_a_resend_signing_secret_as_issued_is_taken_as_is(env):
    env.setenv("RESEND_WEBHOOK_SECRET", " whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw ")
    assert load().resend_webhook_secret == "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_log_format_takes_any_case_as_log_level_does(env):
    env.setenv("LOG_FORMAT", " JSON ")
    assert load().log_format == "json"
