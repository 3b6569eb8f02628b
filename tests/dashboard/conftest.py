"""Fixtures for the dashboard's AppTest suite: an app that builds its services from the test database.

The app reads its configuration from the environment like `streamlit run` does, so each test
points DATABASE_URL and DATA_DIR at its own database, runs from an empty directory (no stray
.env), and starts and ends with Streamlit's process-wide caches cleared.
"""

import re
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import streamlit as st
from streamlit.testing.v1 import AppTest

from core import controls, db, heartbeat
from core.bootstrap import build_services
from core.dispatch import Dispatcher
from core.intake import enroll_now
from core.testing import FakeMailer
from core.timeutil import utcnow
from tests.support import FrozenClock, signup_request

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "dashboard.py"
PAGES = ["pages/overview.py", "pages/signups.py", "pages/sends.py", "pages/test_signup.py",
         "pages/templates.py", "pages/settings.py"]


def page_text(at) -> str:
    """Every piece of text an AppTest run shows: markdown, captions, alerts and toasts."""
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [t.value for t in at.title]
    parts += [e.value for e in at.error] + [w.value for w in at.warning] + [i.value for i in at.info]
    parts += [s.value for s in at.success] + [t.value for t in at.toast] + [s.value for s in at.subheader]
    return shown("\n".join(str(p) for p in parts))


def shown(markdown: str) -> str:
    """Markdown source as the reader sees it: escaping backslashes dropped."""
    return _UNESCAPE.sub(r"\1", markdown)


_UNESCAPE = re.compile(r"\\([^\w\s]|_)")


def back_off(engine, enrollment_id: str, step: int, error: str) -> None:
    """Leave one send as the dispatcher leaves a batch in backoff after the provider failed to answer."""
    send_t = sa.table("send", sa.column("enrollment_id"), sa.column("step"), sa.column("status"),
                      sa.column("lease_expires_at"), sa.column("last_error"), sa.column("updated_at"))
    with db.write_transaction(engine) as conn:
        conn.execute(send_t.update().where(send_t.c.enrollment_id == enrollment_id, send_t.c.step == step).values(
            status="sending", lease_expires_at=utcnow() + timedelta(minutes=5), updated_at=utcnow(),
            last_error=error))


@pytest.fixture(autouse=True)
def served_on_this_machine_only():
    """Streamlit's address as the project's config.toml sets it (AppTest reads none, and none means every
    interface, which the dashboard refuses to serve unlocked)."""
    from streamlit import config

    before = config.get_option("server.address")
    config.set_option("server.address", "127.0.0.1")
    yield
    config.set_option("server.address", before)


@pytest.fixture(autouse=True)
def fresh_streamlit_caches():
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()  # on_release closes the app's engine


@pytest.fixture
def app_env(make_settings, database_url, tmp_path, monkeypatch):
    """Environment for the app under test; returns a function that sets further variables."""
    make_settings()  # clears every Nurture variable from the environment
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    return lambda **values: [monkeypatch.setenv(k.upper(), str(v)) for k, v in values.items()]


@pytest.fixture
def open_app(app_env):
    """Run the dashboard (optionally on one page) and return the AppTest after its run."""

    def open_(page: str | None = None, *, user: dict | None = None, secrets: dict | None = None) -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=30)
        if user is not None:
            at.user = user
        for key, value in (secrets or {}).items():
            at.secrets[key] = value
        at.run()
        if page:
            at.switch_page(page).run()
        return at

    return open_


@pytest.fixture
def seeded(make_settings):
    """A populated database: three segments, sends sent, delivered, opened, failed, an unsubscribe."""
    clock = FrozenClock(utcnow() - timedelta(hours=3))
    mailer = FakeMailer()
    mailer.reject("broken@example.com", "422 invalid `to` address")
    services = build_services(make_settings(), migrate=True, clock=clock, mailer=mailer)
    try:
        people = [
            signup_request(email="casey@example.com", first_name="Casey", business_name="Crumbling Co",
                           red_systems=2, orange_systems=1),
            signup_request(email="uma@example.com", first_name="Uma", business_name="Uneven Ltd",
                           red_systems=1, orange_systems=0),
            signup_request(email="otto@example.com", first_name="Otto", business_name="Orderly plc",
                           red_systems=0, orange_systems=1),
            signup_request(email="broken@example.com", first_name="Bea", red_systems=0, orange_systems=3),
            signup_request(email="leaver@example.com", first_name="Lee", red_systems=0, orange_systems=0),
        ]
        results = {r.email: r for r in enroll_now(services, people)}
        Dispatcher(services, "test-worker").run_pass()
        clock.advance(minutes=30)
        send_t = sa.table("send", sa.column("contact_id"), sa.column("step"), sa.column("delivered_at"),
                          sa.column("opened_at"), sa.column("clicked_at"))
        with db.write_transaction(services.engine) as conn:
            casey = results["casey@example.com"].contact_id
            conn.execute(send_t.update().where(send_t.c.contact_id == casey, send_t.c.step == 1)
                         .values(delivered_at=clock(), opened_at=clock(), clicked_at=clock()))
            controls.unsubscribe_contact(conn, results["leaver@example.com"].contact_id, actor="test",
                                         now=clock())
            heartbeat.beat(conn, "test-worker", utcnow())
        yield {"services": services, "contacts": results}
    finally:
        services.close()
