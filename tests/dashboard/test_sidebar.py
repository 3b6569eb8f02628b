"""The shared sidebar: the worker's heartbeat and the banners that change what sending means."""

from datetime import timedelta

import pytest

from core import db, heartbeat, switches
from core.timeutil import utcnow
from core.heartbeat import HEARTBEAT_SECONDS
from tests.dashboard.conftest import shown


@pytest.fixture
def backend() -> str:
    """UI behaviour does not depend on the database: SQLite keeps this suite fast."""
    return "sqlite"


def sidebar_text(at) -> str:
    parts = [c.value for c in at.sidebar.caption] + [m.value for m in at.sidebar.markdown]
    parts += [e.value for e in at.sidebar.error] + [w.value for w in at.sidebar.warning]
    parts += [i.value for i in at.sidebar.info] + [str(b.proto) for b in at.sidebar.get("markdown")]
    return shown("\n".join(parts))


def badges(at) -> str:
    return "\n".join(str(e.proto) for e in at.sidebar.children[0].children.values())


def test_a_worker_seen_within_two_intervals_is_shown_alive(seeded, open_app):
    at = open_app()
    assert "Worker running" in badges(at)
    assert "last seen" in sidebar_text(at)


def test_a_silent_worker_is_shown_down_with_how_long_ago_it_was_seen(seeded, open_app):
    with db.write_transaction(seeded["services"].engine) as conn:
        conn.exec_driver_sql("DELETE FROM worker")
        heartbeat.beat(conn, "old-worker", utcnow() - timedelta(seconds=3 * HEARTBEAT_SECONDS))
    at = open_app()
    assert "Worker not running" in badges(at)
    assert "last seen 15 s ago" in sidebar_text(at)


def test_with_no_worker_ever_the_sidebar_says_how_to_start_one(open_app):
    at = open_app()
    assert "Worker not running" in badges(at) and "scheduler.py" in sidebar_text(at)


def test_the_banners_show_dry_run_test_mode_and_a_pause_with_its_reason(seeded, open_app):
    with db.write_transaction(seeded["services"].engine) as conn:
        switches.set_test_mode(conn, True, actor="test", now=utcnow())
        switches.set_paused(conn, True, actor="worker", now=utcnow(),
                            reason="circuit breaker: 3 consecutive provider account errors")
    text = sidebar_text(open_app("pages/sends.py"))
    assert "Dry run" in text and "Test mode" in text
    assert "Sending paused" in text and "circuit breaker: 3 consecutive" in text


def test_with_a_resend_key_there_is_no_dry_run_banner(app_env, open_app):
    app_env(resend_api_key="re_test_key", resend_from_email="team@example.com")
    assert "Dry run" not in sidebar_text(open_app())
