"""The Notion mirror end to end over real HTTP: notion-client against the stand-in Notion API on 127.0.0.1.

SQLite only: what these tests add over test_notion_sync.py is the wire, not the database.
"""

import time
from datetime import timedelta

import pytest

from core import db, erasure
from core.bootstrap import build_services
from core.dispatch import Dispatcher
from core.intake import enroll_now
from core.notion.client import NotionClient
from core.notion.errors import NotionUnavailable
from core.notion.properties import EXPECTED
from core.notion.schema import check_schema
from core.notion.sync import NotionSync, SyncPolicy
from core.side_status import backlog
from core.testing import FakeMailer
from tests.standins.notion_api import NotionStandIn
from tests.support import rows, signup_request


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture
def notion_api():
    with NotionStandIn() as api:
        yield api


@pytest.fixture
def database(notion_api) -> str:
    return notion_api.add_database(EXPECTED)


@pytest.fixture
def mailer() -> FakeMailer:
    return FakeMailer()


@pytest.fixture
def services(make_settings, clock, notion_api, database, mailer):
    settings = make_settings(notion_token=notion_api.token, notion_email_sequence_db_id=database,
                             notion_api_url=notion_api.url)
    built = build_services(settings, migrate=True, clock=clock, mailer=mailer)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def make_sync(services):
    """NotionSync over a real notion-client adapter; its HTTP connections are closed after the test."""
    clients: list[NotionClient] = []

    def make(rate: float = 100.0) -> NotionSync:
        settings = services.settings
        clients.append(NotionClient(settings.notion_token, settings.notion_email_sequence_db_id,
                                    base_url=settings.notion_api_url, rate=rate, max_wait=2.0))
        return NotionSync(services, clients[-1], "worker-a", SyncPolicy(stop_poll=timedelta(0)))

    yield make
    for client in clients:
        client.close()


def enroll(services, *emails: str) -> list:
    return enroll_now(services, [signup_request(email=e) for e in emails])


def drain(services, sync: NotionSync, clock, passes: int = 30) -> None:
    """Run passes, moving the clock past every backoff, until nothing waits for Notion."""
    for _ in range(passes):
        sync.run_pass()
        with services.engine.connect() as conn:
            if backlog(conn, "notion", clock()).pending == 0:
                return
        clock.advance(minutes=16)
    raise AssertionError("the mirror never caught up")


def page_of(notion_api, database, email: str) -> dict:
    [page] = [p for p in notion_api.pages(database) if notion_api.values(p["id"])["Email"] == email]
    return notion_api.values(page["id"])


def test_pages_are_created_once_and_checkboxes_ticked_as_steps_go_out(make_sync, services, notion_api, database, clock):
    enroll(services, "a@example.com", "b@example.com")
    sync, dispatcher = make_sync(), Dispatcher(services, "dispatcher")
    for _ in range(3):  # three steps, a day or two apart
        dispatcher.run_pass()
        sync.run_pass()
        clock.advance(hours=48)

    assert len(notion_api.pages(database)) == 2 and notion_api.stats["created"] == 2
    page = page_of(notion_api, database, "a@example.com")
    assert [page[f"Email {n} Sent"] for n in range(1, 5)] == [True, True, True, False]
    assert page["Status"] == "active" and page["Segment"] == "OPTIMIZE"


def test_a_create_whose_answer_was_lost_never_makes_a_second_page(make_sync, services, notion_api, database, clock):
    enroll(services, "a@example.com")
    notion_api.fail(status=504, code="gateway_timeout", path="/v1/pages", method="POST", apply=True)
    sync = make_sync()

    sync.run_pass()
    drain(services, sync, clock)

    assert len(notion_api.pages(database)) == 1
    assert notion_api.stats["created"] == 1 and notion_api.stats["updated"] == 1


def test_storms_of_429_and_5xx_are_survived_with_nothing_lost(make_sync, services, notion_api, database, clock):
    emails = [f"lead{i}@example.com" for i in range(12)]
    enroll(services, *emails)
    notion_api.fail(times=3, status=503)
    notion_api.fail(times=2, status=429, code="rate_limited", retry_after=0)
    notion_api.fail(times=2, status=500, code="internal_server_error", path="/v1/pages")
    notion_api.fail(status=502, code="service_unavailable", path="/v1/data_sources")
    sync = make_sync()

    drain(services, sync, clock)
    Dispatcher(services, "dispatcher").run_pass()
    drain(services, sync, clock)

    pages = notion_api.pages(database)
    assert notion_api.stats["faulted"] == 8
    assert sorted(notion_api.values(p["id"])["Email"] for p in pages) == sorted(emails)
    assert all(notion_api.values(p["id"])["Email 1 Sent"] for p in pages)
    failed = rows(services.engine, "SELECT count(*) AS n FROM outbox WHERE channel = 'notion' AND attempts > 0")
    assert failed[0]["n"] > 0  # the storm was felt, and retried


def test_the_real_rate_limit_is_met_with_retry_after_and_nothing_lost(make_sync, services, notion_api, database, clock):
    notion_api.limit(4)  # far below what the client is allowed to send
    emails = [f"lead{i}@example.com" for i in range(6)]
    enroll(services, *emails)

    drain(services, make_sync(rate=50), clock)

    assert notion_api.stats["rate_limited"] > 0
    assert len(notion_api.pages(database)) == len(emails)


def test_notion_down_for_a_day_delays_only_the_mirror_and_every_email_goes_on_time(
        make_sync, services, notion_api, database, clock, mailer):
    start = clock()
    emails = [f"lead{i}@example.com" for i in range(4)]
    enroll(services, *emails)
    notion_api.down = True
    sync, dispatcher = make_sync(), Dispatcher(services, "dispatcher")
    slowest = 0.0
    for _ in range(49):  # a day and half an hour, every 30 minutes
        dispatcher.run_pass()
        began = time.monotonic()
        sync.run_pass()
        slowest = max(slowest, time.monotonic() - began)
        clock.advance(minutes=30)

    sent = rows(services.engine, "SELECT step, due_at, sent_at FROM send WHERE status = 'sent' ORDER BY step")
    assert len(mailer.sent) == 8 and [r["step"] for r in sent] == [1] * 4 + [2] * 4
    assert all(r["sent_at"] == r["due_at"] for r in sent)  # each at the first pass after it fell due
    assert notion_api.pages(database) == [] and slowest < 1.0

    notion_api.down = False
    drain(services, sync, clock)

    assert all(page_of(notion_api, database, e)["Email 2 Sent"] for e in emails)
    assert notion_api.stats["created"] == 4
    assert clock() - start > timedelta(days=1)


def test_a_stop_ticked_in_notion_is_read_back_and_cancels_the_rest(make_sync, services, notion_api, database, clock):
    [result] = enroll(services, "a@example.com")
    sync = make_sync()
    sync.run_pass()
    [page] = notion_api.pages(database)
    notion_api.set_value(page["id"], "Stop", True)

    report = sync.run_pass()

    assert report.stopped == 1
    statuses = rows(services.engine, "SELECT status FROM send WHERE enrollment_id = :e", e=result.enrollment_id)
    assert {r["status"] for r in statuses} == {"cancelled"}
    [event] = rows(services.engine, "SELECT actor FROM event WHERE kind = 'sequence_cancelled'")
    assert event["actor"] == "notion"
    drain(services, sync, clock)
    assert notion_api.values(page["id"])["Status"] == "cancelled"


def test_a_stop_ticked_on_a_page_written_before_the_status_column_existed_still_cancels(
        make_settings, clock, notion_api, mailer):
    partial = notion_api.add_database({n: k for n, k in EXPECTED.items() if n not in ("Status", "Stop")})
    settings = make_settings(notion_token=notion_api.token, notion_email_sequence_db_id=partial,
                             notion_api_url=notion_api.url)
    services = build_services(settings, migrate=True, clock=clock, mailer=mailer)
    client = NotionClient(settings.notion_token, partial, base_url=notion_api.url, rate=100)
    try:
        [result] = enroll(services, "a@example.com")
        sync = NotionSync(services, client, "worker-a", SyncPolicy(stop_poll=timedelta(0)))
        sync.run_pass()
        check_schema(client, create_missing=True)  # Status and Stop arrive empty on the page already written
        [page] = notion_api.pages(partial)
        notion_api.set_value(page["id"], "Stop", True)

        report = sync.run_pass()
    finally:
        client.close()
        services.close()

    assert report.stopped == 1
    [enrollment] = rows(services.engine, "SELECT status FROM enrollment WHERE id = :e", e=result.enrollment_id)
    assert enrollment["status"] == "cancelled"


def with_business_records(notion_api, make_settings):
    """A BusinessX database holding Acme Ltd (a@example.com), and a sequence database related to it."""
    businessx = notion_api.add_database({"Company": "title", "Contact email": "email"}, title="BusinessX")
    notion_api.add_page(businessx, {"Company": "Acme Ltd", "Contact email": "a@example.com"})
    sequence = notion_api.add_database({**EXPECTED, "Business": {"relation": {
        "data_source_id": notion_api.source_id(businessx)}}})
    settings = make_settings(notion_token=notion_api.token, notion_email_sequence_db_id=sequence,
                             notion_businessx_db_id=businessx, notion_api_url=notion_api.url)
    return businessx, sequence, settings


def test_a_sequence_page_is_linked_to_the_business_record_with_the_same_email(
        make_settings, clock, notion_api, mailer):
    businessx, sequence, settings = with_business_records(notion_api, make_settings)
    services = build_services(settings, migrate=True, clock=clock, mailer=mailer)
    try:
        enroll(services, "a@example.com", "b@example.com")
        client = NotionClient(settings.notion_token, sequence, businessx_db_id=businessx,
                              base_url=notion_api.url, rate=100)
        NotionSync(services, client, "worker-a").run_pass()
        client.close()
    finally:
        services.close()

    [business] = notion_api.pages(businessx)
    assert page_of(notion_api, sequence, "a@example.com")["Business"] == [business["id"]]
    assert page_of(notion_api, sequence, "b@example.com")["Business"] == []


def test_an_erased_persons_page_loses_its_link_to_their_business_record(make_settings, clock, notion_api, mailer):
    businessx, sequence, settings = with_business_records(notion_api, make_settings)
    services = build_services(settings, migrate=True, clock=clock, mailer=mailer)
    client = NotionClient(settings.notion_token, sequence, businessx_db_id=businessx, base_url=notion_api.url, rate=100)
    try:
        enroll(services, "a@example.com")
        sync = NotionSync(services, client, "worker-a")
        sync.run_pass()
        with db.write_transaction(services.engine) as conn:
            erasure.forget(conn, "a@example.com", actor="cli", now=clock())
        sync.run_pass()
    finally:
        client.close()
        services.close()

    [page] = notion_api.pages(sequence)
    values = notion_api.values(page["id"])
    assert values["Email"].endswith("@erased.invalid") and values["Business"] == []


def test_a_token_that_http_refuses_as_a_header_is_never_quoted_in_the_error(notion_api, database):
    # httpx quotes a header value it refuses; a token pasted with a trailing space would otherwise
    # show in the log, the dashboard and the public /health outage message.
    token = notion_api.token + " "
    client = NotionClient(token, database, base_url=notion_api.url)
    with pytest.raises(NotionUnavailable) as caught:
        client.schema()
    assert notion_api.token not in str(caught.value) and "NOTION_TOKEN" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_an_address_longer_than_notions_email_limit_still_gets_its_page(make_sync, services, notion_api, database,
                                                                       clock):
    # Notion refuses an email property value over 200 characters; addresses may have 254.
    long = "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 20 + ".com"
    enroll(services, long)

    drain(services, make_sync(), clock)

    [page] = notion_api.pages(database)
    values = notion_api.values(page["id"])
    assert values["Name"] == "Alex — Acme Ltd" and values["Segment"] == "OPTIMIZE"
    assert values["Email"] is None


def test_a_business_name_with_a_comma_in_a_select_column_still_gets_the_page_written(
        make_settings, clock, notion_api, mailer):
    # Notion refuses a select option name with a comma (or over 100 characters): the whole page was refused.
    database = notion_api.add_database({**EXPECTED, "Business Name": "select"})
    settings = make_settings(notion_token=notion_api.token, notion_email_sequence_db_id=database,
                             notion_api_url=notion_api.url)
    services = build_services(settings, migrate=True, clock=clock, mailer=mailer)
    client = NotionClient(settings.notion_token, database, base_url=settings.notion_api_url, rate=100.0)
    try:
        enroll_now(services, [signup_request(email="a@example.com", business_name="Acme, Inc.")])

        drain(services, NotionSync(services, client, "worker-a", SyncPolicy(stop_poll=timedelta(0))), clock)

        page = page_of(notion_api, database, "a@example.com")
        assert page["Name"] == "Alex — Acme, Inc." and page["Business Name"] is None
    finally:
        client.close()
        services.close()
