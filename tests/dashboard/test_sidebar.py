"""The shared sidebar: the worker's heartbeat and the banners that change what sending means."""

from datetime import timedelta

import pytest

from core import db, heartbeat, switches
from core.timeutil import utcnow
from core.heartbeat import HEARTBEAT_SECONDS
from tests.dashboard.conftest import back_off, shown


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
    assert "Until it runs again nothing is sent, and requests from this dashboard wait." in sidebar_text(at)


def test_a_running_worker_is_not_said_to_hold_anything_up(seeded, open_app):
    assert "Until it runs again" not in sidebar_text(open_app())


def test_with_no_worker_ever_the_sidebar_says_how_to_start_one(open_app):
    at = open_app()
    assert "Worker not running" in badges(at) and "scheduler.py" in sidebar_text(at)


def test_the_banners_show_dry_run_test_mode_and_a_pause_with_its_reason(seeded, open_app):
    with db.write_transaction(seeded["services"].engine) as conn:
        switches.set_test_mode(conn, True, actor="test", now=utcnow())
        switches.set_paused(conn, True, actor="worker", now=utcnow(),
                            reason="circuit breaker: 3 consecutive provider account errors")
    at = open_app("pages/sends.py")
    text = sidebar_text(at)
    assert "Dry run" in text and "Test mode" in text
    assert "Sending paused" in text and "circuit breaker: 3 consecutive" in text
    banners = [el.value for el in at.sidebar.children[0].children.values() if el.type in ("error", "warning", "info")]
    order = [next(word for word in ("paused", "Test mode", "Dry run") if word in banner) for banner in banners]
    assert order == ["paused", "Test mode", "Dry run"]  # the switch someone flipped before the lasting state


def test_with_a_resend_key_there_is_no_dry_run_banner(app_env, open_app):
    app_env(resend_api_key="re_test_key", resend_from_email="team@example.com")
    assert "Dry run" not in sidebar_text(open_app())


def test_a_pause_reason_stands_on_its_own_line_quoted_as_typed(seeded, open_app):
    with db.write_transaction(seeded["services"].engine) as conn:
        switches.set_paused(conn, True, actor="dashboard", now=utcnow(), reason="Checking *step 3* copy")
    [banner] = open_app().sidebar.error
    assert shown(banner.value) == ("**Sending paused.** Resume it on the Settings page.\n\n"
                                   "Reason: “Checking *step 3* copy”")


def test_provider_trouble_is_one_plain_sentence_with_the_raw_answer_kept_aside_literally(seeded, open_app):
    raw = ("HTTPConnectionPool(host='127.0.0.1', port=41379): Max retries exceeded with url: /emails "
           "(Caused by NewConnectionError('[Errno 111] Connection refused'))")
    for email, step in (("uma@example.com", 2), ("otto@example.com", 2)):
        back_off(seeded["services"].engine, seeded["contacts"][email].enrollment_id, step, raw)
    at = open_app()
    [banner] = [w.value for w in at.sidebar.warning if "Provider trouble" in w.value]
    assert shown(banner) == ("**Provider trouble.** Resend can't take emails right now; "
                                   "2 emails wait and are retried automatically — none is lost.")
    [aside] = at.sidebar.expander
    assert aside.label == "What Resend answered"
    assert [shown(c.value) for c in aside.caption] == [f"Resend's last answer: {raw}"]
