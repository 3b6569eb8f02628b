"""Discord alerts from the outbox: once per CRITICAL contact, through 429s and 5xx, over real HTTP."""

from datetime import timedelta

import pytest
import sqlalchemy as sa

from core import db, outbox, side_jobs
from core.alerts import AlertPolicy, AlertService, PermanentAlertError, SignatureFailureWatch, TransientAlertError, \
    note_signature_failure, queue_ops_alert
from core.bootstrap import build_services
from core.discord import DiscordWebhook
from core.enrollments import SignupRequest
from core.intake import enroll_now
from core.signups import parse_signup
from core.side_status import backlog, discord_overview, health_fields
from core.testing_side import FakeDiscord
from core.worker import WorkerJobs
from tests.standins.discord_api import DiscordStandIn
from tests.support import rows, signup_request

# The outbox claims run on PostgreSQL in the Notion sync tests; here one test per backend-sensitive path is enough.
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"])


@pytest.fixture
def discord_api():
    with DiscordStandIn() as api:
        yield api


@pytest.fixture
def services(make_settings, clock, discord_api):
    settings = make_settings(discord_webhook_url=discord_api.webhook_url, dashboard_url="https://dash.example.com")
    built = build_services(settings, migrate=True, clock=clock)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def alerts(services, discord_api):
    webhook = DiscordWebhook(discord_api.webhook_url)
    yield AlertService(services, webhook, "worker-a")
    webhook.close()


def enroll(services, email: str, red: int = 2):
    return enroll_now(services, [signup_request(email=email, red_systems=red)])[0]


def pending(services) -> list[dict]:
    return rows(services.engine,
                "SELECT attempts, last_error FROM outbox WHERE channel = 'discord' AND done_at IS NULL")


@sqlite_only
def test_a_critical_signup_posts_one_embed_naming_the_lead_with_a_dashboard_link(services, alerts, discord_api):
    result = enroll(services, "casey@example.com", red=3)

    assert alerts.run_pass() == 1

    [message] = discord_api.messages
    embed = message["embeds"][0]
    assert embed["title"] == "CRITICAL lead: Alex"
    assert {"name": "Red systems", "value": "3", "inline": True} in embed["fields"]
    assert embed["url"] == f"https://dash.example.com/signups?contact={result.contact_id}"
    assert pending(services) == []


@pytest.fixture
def closed_webhooks(monkeypatch):
    """The webhooks side_jobs builds, closed after the test (a worker's process exit closes them)."""
    built: list[DiscordWebhook] = []

    def tracked(*args, **kwargs) -> DiscordWebhook:
        built.append(DiscordWebhook(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(side_jobs, "DiscordWebhook", tracked)
    yield
    for webhook in built:
        webhook.close()


@pytest.mark.usefixtures("closed_webhooks")
def test_a_once_run_right_after_another_posts_the_alert_the_first_left_unposted(services, discord_api):
    first, second = WorkerJobs(services, "once-1"), WorkerJobs(services, "once-2")
    side_jobs.register_side_jobs(first)
    side_jobs.register_side_jobs(second)
    first.run_once()  # the clock is frozen: a lease kept by this run would never expire
    enroll(services, "casey@example.com", red=3)

    second.run_once()

    assert [m["embeds"][0]["title"] for m in discord_api.messages] == ["CRITICAL lead: Alex"]
    assert rows(services.engine, "SELECT name, owner FROM job_lease") == []


@pytest.mark.usefixtures("closed_webhooks")
def test_the_alert_job_failing_for_want_of_the_database_is_reported_for_health(services, monkeypatch):
    jobs = WorkerJobs(services, "worker-a")
    side_jobs.register_side_jobs(jobs)
    [(alert_job, _)] = [(job, every) for job, every in jobs.schedule() if job.__name__ == "post_discord_alerts"]
    run_as_singleton = side_jobs.singleton.run_as_singleton

    def disk_full(*args):
        raise sa.exc.OperationalError("INSERT INTO job_lease …", {}, Exception("database or disk is full"))

    monkeypatch.setattr(side_jobs.singleton, "run_as_singleton", disk_full)
    alert_job()
    assert services.write_failures.current() == {"post_discord_alerts": "database or disk is full"}
    monkeypatch.setattr(side_jobs.singleton, "run_as_singleton", run_as_singleton)
    alert_job()
    assert services.write_failures.current() == {}


@sqlite_only
def test_markdown_in_a_leads_name_is_shown_literally_never_as_a_link_or_a_ping(services, alerts, discord_api):
    enroll_now(services, [signup_request(email="phish@example.com", red_systems=3,
                                         first_name="@everyone [Verify your account](https://evil.example/login)",
                                         business_name="**URGENT** ||pay here||")])
    assert alerts.run_pass() == 1

    [message] = discord_api.messages
    fields = {f["name"]: f["value"] for f in message["embeds"][0]["fields"]}
    assert fields["Name"] == r"@everyone \[Verify your account\]\(https\://evil.example/login\)"
    assert fields["Business"] == r"\*\*URGENT\*\* \|\|pay here\|\|"
    assert message["embeds"][0]["title"].startswith(r"CRITICAL lead: @everyone \[Verify")
    assert message["allowed_mentions"] == {"parse": []}


def test_a_contact_is_alerted_only_once_however_often_they_sign_up(services, alerts, discord_api, clock):
    enroll(services, "casey@example.com")
    alerts.run_pass()
    enroll(services, "casey@example.com")
    clock.advance(minutes=5)

    assert alerts.run_pass() == 0
    assert len(discord_api.messages) == 1


@sqlite_only
def test_leads_that_are_not_critical_never_alert(services, alerts, discord_api):
    enroll(services, "uma@example.com", red=1)
    enroll(services, "otto@example.com", red=0)

    assert rows(services.engine, "SELECT count(*) AS n FROM outbox WHERE channel = 'discord'") == [{"n": 0}]
    assert alerts.run_pass() == 0 and discord_api.requests == 0


def test_a_resubmission_that_makes_a_lead_critical_before_any_send_alerts(services, alerts, discord_api):
    first = enroll(services, "rising@example.com", red=0)
    again = enroll(services, "rising@example.com", red=3)

    assert (first.segment, again.outcome.value, again.segment) == ("OPTIMIZE", "updated", "CRITICAL")
    assert alerts.run_pass() == 1
    assert discord_api.messages[0]["embeds"][0]["title"] == "CRITICAL lead: Alex"


@sqlite_only
def test_a_lead_that_leaves_critical_in_the_same_batch_or_before_the_alert_goes_is_not_alerted(
        services, alerts, discord_api):
    # Two signups of one address committed together: the last one decides the segment.
    enroll_now(services, [signup_request(email="wobbly@example.com", red_systems=3),
                          signup_request(email="wobbly@example.com", red_systems=0)])
    # CRITICAL when queued, OPTIMIZE by the time the alert job runs.
    enroll(services, "cooled@example.com", red=3)
    enroll(services, "cooled@example.com", red=0)

    assert alerts.run_pass() == 0 and discord_api.requests == 0
    assert rows(services.engine, "SELECT count(*) AS n FROM outbox WHERE channel = 'discord' AND done_at IS NULL") \
        == [{"n": 0}]


def test_discords_429_retry_after_is_honoured_and_nothing_is_lost(services, alerts, discord_api, clock):
    enroll(services, "a@example.com")
    enroll(services, "b@example.com")
    discord_api.fail(429, retry_after=30)

    first = alerts.run_pass()
    held = alerts.run_pass()
    clock.advance(seconds=31)
    second = alerts.run_pass()
    clock.advance(minutes=2)
    third = alerts.run_pass()

    assert (first, held) == (0, 0) and discord_api.requests == 3
    assert second + third == 2 and len(discord_api.messages) == 2
    assert pending(services) == []


@sqlite_only
def test_a_storm_of_server_errors_delays_alerts_but_loses_none(services, alerts, discord_api, clock):
    for i in range(4):
        enroll(services, f"lead{i}@example.com")
    discord_api.fail(503, times=5)

    for _ in range(12):
        alerts.run_pass()
        clock.advance(minutes=5)

    assert sorted(m["embeds"][0]["fields"][2]["value"] for m in discord_api.messages) == \
        [f"lead{i}@example.com" for i in range(4)]
    assert pending(services) == []


@sqlite_only
def test_a_refused_alert_is_retried_then_given_up_with_its_reason_kept(services, clock):
    enroll(services, "a@example.com")
    sink = FakeDiscord()
    sink.fail_next(*[PermanentAlertError("Discord 404: Unknown Webhook", status=404)] * 2)
    service = AlertService(services, sink, "worker-a", AlertPolicy(max_attempts=2))

    service.run_pass()
    clock.advance(minutes=5)
    service.run_pass()

    [row] = rows(services.engine, "SELECT attempts, done_at, last_error FROM outbox WHERE channel = 'discord'")
    assert row["done_at"] is not None and "gave up after 2 attempts" in row["last_error"]
    assert sink.messages == []
    # Not pending any more, but not forgotten: Settings and /health show it for a week.
    with services.engine.connect() as conn:
        shown = backlog(conn, "discord", clock()).as_dict()
    assert (shown["backlog"], shown["given_up_7d"], shown["healthy"]) == (0, 1, False)
    assert "gave up after 2 attempts: Discord 404: Unknown Webhook" in shown["last_error"]


@sqlite_only
def test_health_says_when_an_alert_last_went_through_and_a_given_up_one_is_not_counted(services, clock):
    sink = FakeDiscord()
    service = AlertService(services, sink, "worker-a", AlertPolicy(max_attempts=1))
    enroll(services, "went@example.com")
    posted_at = clock()
    service.run_pass()
    clock.advance(hours=2)
    enroll(services, "refused@example.com")
    sink.fail_next(PermanentAlertError("Discord 404: Unknown Webhook", status=404))
    service.run_pass()

    with services.engine.connect() as conn:
        shown = discord_overview(conn, clock())
        health = health_fields(conn, services.settings, clock())["discord_alerts"]
    assert len(sink.messages) == 1 and shown["given_up_7d"] == 1
    assert shown["last_posted_at"] == health["last_posted_at"] == posted_at.isoformat()


def test_finished_outbox_rows_are_deleted_after_thirty_days_and_pending_ones_never(services, alerts, clock):
    enroll(services, "old@example.com")
    alerts.run_pass()  # done now
    clock.advance(days=20)
    enroll(services, "recent@example.com")
    alerts.run_pass()
    with db.write_transaction(services.engine) as conn:
        queue_ops_alert(conn, services.settings, "circuit_breaker", "still waiting", clock())  # stays pending
    clock.advance(days=11)

    with db.write_transaction(services.engine) as conn:
        assert outbox.purge_done(conn, clock()) == 1

    left = rows(services.engine, "SELECT done_at IS NULL AS pending FROM outbox ORDER BY created_at")
    assert left == [{"pending": False}, {"pending": True}]


@sqlite_only
def test_an_operational_alert_is_queued_at_most_once_an_hour(services, alerts, discord_api, clock):
    for _ in range(3):
        with db.write_transaction(services.engine) as conn:
            queue_ops_alert(conn, services.settings, "circuit_breaker", "3 account errors", clock())
        clock.advance(minutes=10)

    alerts.run_pass()

    assert [m["embeds"][0]["title"] for m in discord_api.messages] == ["Sending paused by the circuit breaker"]


@sqlite_only
def test_a_burst_of_bad_webhook_signatures_queues_one_alert(services, alerts, discord_api, clock):
    watch = SignatureFailureWatch(threshold=3, window=timedelta(minutes=5))
    for _ in range(6):
        note_signature_failure(services, watch)
        clock.advance(seconds=10)

    alerts.run_pass()

    [message] = discord_api.messages
    assert message["embeds"][0]["title"] == "Burst of bad webhook signatures"


@sqlite_only
def test_nothing_is_queued_for_discord_when_it_is_not_configured(make_settings, clock):
    services = build_services(make_settings(), migrate=True, clock=clock)
    try:
        enroll(services, "a@example.com")
        with db.write_transaction(services.engine) as conn:
            queue_ops_alert(conn, services.settings, "circuit_breaker", "x", clock())
        assert pending(services) == []
    finally:
        services.close()


@sqlite_only
def test_a_lead_who_leaves_critical_before_the_alert_and_returns_is_alerted_once(services, alerts, discord_api):
    enroll(services, "yoyo@example.com", red=3)
    enroll(services, "yoyo@example.com", red=0)
    assert alerts.run_pass() == 0  # not CRITICAL when the alert job ran

    again = enroll(services, "yoyo@example.com", red=2)
    assert again.segment == "CRITICAL" and alerts.run_pass() == 1
    enroll(services, "yoyo@example.com", red=4)
    assert alerts.run_pass() == 0 and len(discord_api.messages) == 1


def test_a_lead_who_turns_critical_again_while_the_job_decides_there_is_nothing_to_say_is_still_alerted(
        services, alerts, discord_api, monkeypatch):
    import core.alerts

    enroll(services, "late@example.com", red=3)
    enroll(services, "late@example.com", red=0)  # out of CRITICAL before the alert job looks
    first_look = core.alerts.build_message

    def look_then_resubmit(conn, payload, dashboard_url, **kwargs):
        message = first_look(conn, payload, dashboard_url, **kwargs)
        if not kwargs.get("lock"):  # between the job's first look and its write, the lead signs up as CRITICAL
            monkeypatch.setattr(core.alerts, "build_message", first_look)
            assert enroll(services, "late@example.com", red=2).segment == "CRITICAL"
        return message

    monkeypatch.setattr(core.alerts, "build_message", look_then_resubmit)
    assert alerts.run_pass() == 0  # that signup found the alert's key still taken: this row must carry it

    assert alerts.run_pass() == 1
    assert [m["embeds"][0]["title"] for m in discord_api.messages] == ["CRITICAL lead: Alex"]


@sqlite_only
def test_a_deleted_webhook_pauses_the_channel_visibly_and_loses_no_alert(services, alerts, discord_api, clock):
    for i in range(3):
        enroll(services, f"lead{i}@example.com")
    discord_api.fail(404, times=1000)

    for _ in range(24):  # two hours of a deleted webhook, the worker's job running every five minutes
        alerts.run_pass()
        clock.advance(minutes=5)
    with services.engine.connect() as conn:
        during = backlog(conn, "discord", clock())
    assert len(discord_api.messages) == 0 and discord_api.requests <= 24
    assert during.pending == 3 and during.given_up == 0 and "Discord 404" in during.outage
    assert all(row["attempts"] == 0 for row in pending(services)), "no alert spent its attempts on the outage"

    discord_api.clear_faults()  # the webhook is fixed
    clock.advance(minutes=5)
    alerts.run_pass()
    with services.engine.connect() as conn:
        after = backlog(conn, "discord", clock())
    assert len(discord_api.messages) == 3 and after.outage is None and pending(services) == []


@sqlite_only
def test_an_alert_for_a_test_signup_says_it_is_a_test(services, alerts, discord_api):
    enroll_now(services, [SignupRequest(parse_signup({"email": "me@example.com", "first_name": "Me", "red_systems": 2}),
                                        source="test_signup", is_test=True, force_test_timing=True)])
    assert alerts.run_pass() == 1
    assert discord_api.messages[0]["embeds"][0]["title"] == "[TEST] CRITICAL lead: Me"


@sqlite_only
def test_a_rate_limit_is_a_wait_not_a_failure_of_the_alert_nor_of_the_channel(services, alerts, discord_api, clock):
    enroll(services, "a@example.com")
    enroll(services, "b@example.com")
    discord_api.fail(429, retry_after=2)

    assert alerts.run_pass() == 0

    # Nothing was refused: neither alert is counted as failing, and Settings and /health stay green.
    assert pending(services) == [{"attempts": 0, "last_error": None}] * 2
    with services.engine.connect() as conn:
        shown = backlog(conn, "discord", clock()).as_dict()
    assert (shown["failing"], shown["outage"], shown["healthy"]) == (0, None, True)
    clock.advance(seconds=2)
    assert alerts.run_pass() == 2 and pending(services) == []


@sqlite_only
def test_rate_limits_do_not_bring_an_alert_closer_to_being_given_up(services, clock):
    enroll(services, "a@example.com")
    sink = FakeDiscord()
    sink.fail_next(*[TransientAlertError("Discord 429 rate limited", status=429, retry_after=1)] * 3,
                   PermanentAlertError("Discord 400: Invalid Form Body", status=400))
    service = AlertService(services, sink, "worker-a", AlertPolicy(max_attempts=2))

    for _ in range(5):
        service.run_pass()
        clock.advance(minutes=5)

    # One refusal of the two allowed: posted on the next try, not given up for three rate limits.
    assert len(sink.messages) == 1
    [row] = rows(services.engine, "SELECT attempts, last_error FROM outbox WHERE channel = 'discord'")
    assert row == {"attempts": 1, "last_error": None}


def test_the_webhook_keeps_within_discords_rate_limit_headers_and_is_never_refused():
    with DiscordStandIn(rate_limit=(2, 0.5)) as api:
        webhook = DiscordWebhook(api.webhook_url)
        try:
            for i in range(5):
                webhook.post({"content": f"alert {i}"})
        finally:
            webhook.close()

        # X-RateLimit-Remaining 0 said to wait X-RateLimit-Reset-After before the next post: no 429 came.
        assert len(api.messages) == 5 and api.rate_limited == 0


def test_a_wait_longer_than_the_webhook_sleeps_through_is_a_rate_limit_that_pauses_the_alerts(services, clock):
    with DiscordStandIn(rate_limit=(1, 30.0)) as api:
        webhook = DiscordWebhook(api.webhook_url)
        service = AlertService(services, webhook, "worker-a")
        enroll(services, "a@example.com")
        enroll(services, "b@example.com")
        try:
            assert service.run_pass() == 1
        finally:
            webhook.close()

        assert api.requests == 1 and api.rate_limited == 0  # the second alert was not even tried
        assert pending(services) == [{"attempts": 0, "last_error": None}]


@sqlite_only
def test_with_the_default_dashboard_url_on_localhost_the_alert_still_posts_with_the_link_as_text(
        make_settings, clock, discord_api):
    # Discord refuses an embed whose url has no dot in its host (400 {"embeds": ["0"]}), and the
    # default DASHBOARD_URL is http://localhost:8501: every CRITICAL alert would be refused, then given up.
    settings = make_settings(discord_webhook_url=discord_api.webhook_url)
    services = build_services(settings, migrate=True, clock=clock)
    webhook = DiscordWebhook(discord_api.webhook_url)
    try:
        result = enroll(services, "casey@example.com", red=3)

        assert AlertService(services, webhook, "worker-a").run_pass() == 1

        [message] = discord_api.messages
        embed = message["embeds"][0]
        assert "url" not in embed
        assert f"http://localhost:8501/signups?contact={result.contact_id}" in embed["description"]
        assert pending(services) == []
    finally:
        webhook.close()
        services.close()


@sqlite_only
def test_a_webhook_made_in_a_forum_channel_pauses_the_channel_visibly_and_loses_no_alert(make_settings, clock):
    # Discord refuses every post to a forum channel's webhook that names no thread (400, code 220001):
    # a setup to fix, like a deleted webhook, not twelve refusals of each alert and then giving it up.
    with DiscordStandIn(forum=True) as api:
        settings = make_settings(discord_webhook_url=api.webhook_url, dashboard_url="https://dash.example.com")
        services = build_services(settings, migrate=True, clock=clock)
        webhook = DiscordWebhook(api.webhook_url)
        try:
            alerts = AlertService(services, webhook, "worker-a")
            enroll(services, "lead@example.com")
            for _ in range(24):
                alerts.run_pass()
                clock.advance(minutes=5)
            with services.engine.connect() as conn:
                during = backlog(conn, "discord", clock())
            assert during.pending == 1 and during.given_up == 0 and "thread" in during.outage
            assert pending(services)[0]["attempts"] == 0

            api.forum = False  # the webhook is made again in a text channel
            clock.advance(minutes=5)
            alerts.run_pass()
            assert len(api.messages) == 1 and pending(services) == []
        finally:
            webhook.close()
            services.close()


def test_the_webhook_url_as_discord_copies_it_is_posted_to_as_api_v10(services, alerts, discord_api, clock):
    # With no version in the path Discord serves its deprecated default, whose 429 says retry_after in
    # milliseconds: 1.5 s read as 1,500 s held every alert for 25 minutes.
    enroll(services, "a@example.com")
    discord_api.fail(429, retry_after=1.5)

    assert alerts.run_pass() == 0
    clock.advance(seconds=2)
    assert alerts.run_pass() == 1

    assert set(discord_api.paths) == {"/api/v10/webhooks/1234567890/standin-token"}


@sqlite_only
def test_a_worker_asked_to_stop_posts_no_further_alert_and_gives_the_rest_back(make_settings, clock):
    # The pass posted all it had claimed (up to 20, each up to a 10 s timeout) after SIGTERM, holding the stop.
    from core.testing_side import FakeDiscord
    settings = make_settings(discord_webhook_url="https://discord.com/api/webhooks/1/token")
    built = build_services(settings, migrate=True, clock=clock)
    try:
        for n in range(3):
            enroll(built, f"lead{n}@example.com")
        sink = FakeDiscord()
        post = sink.post

        def post_then_stop(message: dict) -> None:
            post(message)
            built.stopping.set()  # SIGTERM arrives during this post

        sink.post = post_then_stop

        assert AlertService(built, sink, "worker-a").run_pass() == 1

        assert len(pending(built)) == 2
        with db.read_transaction(built.engine) as conn:
            again = outbox.claim(conn, "discord", clock(), timedelta(minutes=2), 20)
        assert len(again) == 2, "given back due now, for the next start or another worker, not left leased"
    finally:
        built.close()
