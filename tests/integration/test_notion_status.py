"""Status surfaces of the side channels (backlog, lag, last sync, per contact), the worker jobs and migration 0003."""

from datetime import timedelta

import pytest
import sqlalchemy as sa

from core import db, side_jobs
from core.bootstrap import build_services
from core.intake import enroll_now
from core.notion.errors import NotionAccessError, NotionUnavailable
from core.notion.sync import NotionSync
from core.side_status import backlog, contact_notion_states, health_fields, notion_overview
from core.testing_side import FakeNotion
from core.worker import WorkerJobs
from tests.support import rows, signup_request

# Port 9 refuses connections at once: a configured-but-unreachable Notion, without the internet.
NOTION = {"notion_token": "secret-test", "notion_email_sequence_db_id": "db-test",
          "notion_api_url": "http://127.0.0.1:9"}


@pytest.fixture
def services(make_settings, clock):
    built = build_services(make_settings(**NOTION, discord_webhook_url="http://127.0.0.1:9/api/webhooks/1/x"),
                           migrate=True, clock=clock)
    try:
        yield built
    finally:
        built.close()


def enroll(services, *emails):
    return enroll_now(services, [signup_request(email=e, red_systems=2) for e in emails])


def read(services, fn, *args):
    with db.read_transaction(services.engine) as conn:
        return fn(conn, *args)


def test_the_backlog_counts_waiting_changes_and_their_lag(services, clock):
    enroll(services, "a@example.com", "b@example.com")
    clock.advance(seconds=90)

    waiting = read(services, backlog, "notion", clock())

    assert (waiting.pending, waiting.failing, waiting.lag_seconds) == (2, 0, 90.0)
    assert read(services, backlog, "discord", clock()).pending == 2


def test_health_reports_configuration_backlog_and_the_last_successful_sync(services, clock):
    [a, _] = enroll(services, "a@example.com", "b@example.com")
    before = read(services, health_fields, services.settings, clock())
    notion = FakeNotion()
    notion.fail_next(NotionUnavailable("Notion 503"), on="update_page")
    NotionSync(services, notion, "worker-a").run_pass()
    clock.advance(seconds=30)

    after = read(services, health_fields, services.settings, clock())

    assert before["notion_sync"] == {"backlog": 2, "failing": 0, "outage": None, "lag_seconds": 0.0,
                                     "last_synced_at": None}
    assert after["notion_configured"] and after["discord_configured"]
    assert after["notion_sync"]["backlog"] == 0
    assert after["notion_sync"]["last_synced_at"] == (clock() - timedelta(seconds=30)).isoformat()
    assert after["discord_alerts"] == {"backlog": 2, "failing": 0, "outage": None, "given_up_7d": 0,
                                       "last_posted_at": None}


def test_a_notion_outage_that_stops_every_write_shows_on_health_and_clears_once_notion_answers(services, clock):
    enroll(services, "a@example.com")
    notion = FakeNotion()
    notion.fail_next(NotionAccessError("Notion 401 unauthorized: API token is invalid", status=401), on="schema")
    sync = NotionSync(services, notion, "worker-a")

    assert sync.run_pass().paused
    during = read(services, health_fields, services.settings, clock())["notion_sync"]
    overview = read(services, notion_overview, clock())
    assert during["outage"].startswith("Notion 401 unauthorized: API token is invalid (retrying")
    assert (overview["healthy"], overview["last_error"]) == (False, during["outage"])

    clock.advance(minutes=10)
    assert sync.run_pass().created == 1
    after = read(services, health_fields, services.settings, clock())["notion_sync"]
    assert (after["outage"], after["backlog"]) == (None, 0)
    assert read(services, notion_overview, clock())["healthy"] is True


def test_each_contact_shows_whether_its_page_is_synced_pending_or_failing(services, clock):
    [a] = enroll(services, "a@example.com")
    clock.advance(seconds=1)  # a's change is the oldest, so it is the one tried first
    [b, _] = enroll(services, "b@example.com", "c@example.com")
    notion = FakeNotion()
    notion.fail_next(NotionUnavailable("Notion 503 service_unavailable"), on="create_page")
    sync = NotionSync(services, notion, "worker-a")
    sync.run_pass()  # a's page fails, which pauses the mirror before b and c
    clock.advance(minutes=10)

    states = read(services, contact_notion_states, [a.contact_id, b.contact_id, "nobody"])

    assert states[a.contact_id].state == "failing" and "503" in states[a.contact_id].last_error
    assert states[b.contact_id].state == "pending" and states[b.contact_id].pending == 1
    assert states["nobody"].state == "not mirrored"
    sync.run_pass()
    synced = read(services, contact_notion_states, [a.contact_id])[a.contact_id]
    assert synced.state == "synced" and synced.page_url.startswith("https://notion.test/")


def test_the_overview_counts_pages_linked_and_enrollments_still_without_one(services, clock):
    enroll(services, "a@example.com", "b@example.com")
    notion = FakeNotion()
    notion.fail_next(NotionUnavailable("down"), on="create_page")
    NotionSync(services, notion, "worker-a").run_pass()

    overview = read(services, notion_overview, clock())

    assert overview["pages_linked"] == 0 and overview["enrollments_without_page"] == 2
    assert overview["backlog"] == 2 and overview["failing"] == 1
    assert overview["last_error"] == overview["outage"] and overview["outage"].startswith("down (retrying ")


def test_side_jobs_are_added_only_for_configured_channels_and_never_raise(make_settings, clock):
    bare = build_services(make_settings(), clock=clock)
    both = build_services(make_settings(**NOTION, discord_webhook_url="http://127.0.0.1:9/x"), clock=clock)
    try:
        none, some = WorkerJobs(bare, "w1"), WorkerJobs(both, "w2")
        side_jobs.register_side_jobs(none)
        side_jobs.register_side_jobs(some)
        for job, _ in some.schedule()[1:]:
            job()  # no tables and no Discord: every failure stays inside its job

        assert [job.__name__ for job, _ in none.schedule()] == ["heartbeat"]
        assert [(job.__name__, s) for job, s in some.schedule()][1:] == [("sync_notion_mirror", 2.0),
                                                                         ("post_discord_alerts", 2.0)]
    finally:
        bare.close()
        both.close()


def test_the_mirror_job_runs_on_one_worker_at_a_time(services):
    first, second = WorkerJobs(services, "w1"), WorkerJobs(services, "w2")
    side_jobs.register_side_jobs(first)
    side_jobs.register_side_jobs(second)

    for jobs in (first, second):
        for job, _ in jobs.schedule()[1:]:
            job()  # Notion and Discord refuse connections: the jobs log it and return

    holders = rows(services.engine, "SELECT name, owner FROM job_lease ORDER BY name")
    assert holders == [{"name": "alerts", "owner": "w1"}, {"name": "notion_sync", "owner": "w1"}]


def test_migration_0003_adds_the_notion_page_table_and_can_be_undone(make_settings):
    from alembic import command

    services = build_services(make_settings(), migrate=True)
    try:
        assert "notion_page" in sa.inspect(services.engine).get_table_names()
        config = db.alembic_config(services.engine.url.render_as_string(hide_password=False))
        command.downgrade(config, "0002")  # undoes 0004, then 0003
        assert "notion_page" not in sa.inspect(services.engine).get_table_names()
        db.upgrade(services.engine)
        assert "notion_page" in sa.inspect(services.engine).get_table_names()
    finally:
        services.close()
