"""The tally (migration 0005) stays exactly equal to counting the tables, on SQLite and PostgreSQL,
whatever path changes the rows: intake, dispatch, controls, provider events, erasure, bulk updates,
deletes, concurrent writers, and the backfill of an existing database."""

import threading
from collections import Counter
from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from core import db
from core.bootstrap import build_services
from core.controls import cancel_sequence, resend_step, skip_step, unsubscribe_contact
from core.dispatch import Dispatcher
from core.erasure import forget
from core.intake import enroll_now
from core.provider_events import record_provider_event
from core.testing import FakeMailer
from tests.support import SendStatusLog, counted, move_to_revision, signup_request, tallied, unique_email


@pytest.fixture
def mailer() -> FakeMailer:
    return FakeMailer()


@pytest.fixture
def services(make_settings, clock, mailer):
    built = build_services(make_settings(), mailer=mailer, clock=clock, migrate=True)
    status_log = SendStatusLog(built.engine)
    try:
        yield built
        status_log.assert_allowed()  # every write path here also keeps to the send state machine
    finally:
        built.close()


def assert_tally_exact(services) -> dict:
    with db.read_transaction(services.engine) as conn:
        expected, actual = counted(conn), tallied(conn)
    assert actual == expected
    return actual


def enroll(services, count: int, **fields) -> list:
    return enroll_now(services, [signup_request(email=unique_email("tally"), **fields) for _ in range(count)])


def test_every_write_path_keeps_the_tally_exact(services, clock, mailer):
    first = enroll(services, 6, red_systems=2)
    second = enroll(services, 4, red_systems=0, orange_systems=1)
    # A resubmission before anything went out re-segments the enrollment.
    enroll_now(services, [signup_request(email=first[0].email, red_systems=0, orange_systems=0)])
    assert assert_tally_exact(services)["segments"] == {"CRITICAL": 5, "OPTIMIZE": 5}

    dispatcher = Dispatcher(services, "tally-worker")
    dispatcher.run_pass()  # every welcome email goes
    assert len(mailer.sent) == 10
    assert_tally_exact(services)

    now = clock()
    welcome = {record.email.to: record.provider_id for record in mailer.sent}
    with db.write_transaction(services.engine) as conn:
        for n, (kind, person) in enumerate([("email.delivered", first[0]), ("email.opened", first[0]),
                                            ("email.clicked", first[1]), ("email.delivered", second[0]),
                                            ("email.bounced", second[1])]):
            record_provider_event(conn, f"msg_{n}", {"type": kind, "created_at": now.isoformat(),
                                                     "data": {"email_id": welcome[person.email],
                                                              "to": [person.email]}}, now)
        cancel_sequence(conn, first[1].enrollment_id, actor="test", now=now)
        unsubscribe_contact(conn, first[2].contact_id, actor="test", now=now)
        skip_step(conn, first[4].enrollment_id, 2, actor="test", now=now)
        resend_step(conn, first[5].enrollment_id, 1, actor="test", now=now)
    assert_tally_exact(services)

    with db.write_transaction(services.engine) as conn:
        forget(conn, first[3].email, actor="test", now=now)
    clock.advance(days=12)
    for _ in range(8):
        dispatcher.run_pass()
        clock.advance(days=2)
    assert_tally_exact(services)

    with db.write_transaction(services.engine) as conn:  # a bulk statement changing many rows at once
        conn.execute(sa.text("UPDATE send SET delivered_at = sent_at WHERE status = 'sent' AND delivered_at IS NULL"))
        conn.execute(sa.text("UPDATE enrollment SET segment = 'URGENT' WHERE segment = 'OPTIMIZE'"))
    assert_tally_exact(services)

    with db.write_transaction(services.engine) as conn:  # deletes take their counts away
        victim = first[0].enrollment_id
        for table in ("event", "send"):
            conn.execute(sa.text(f"DELETE FROM {table} WHERE enrollment_id = :e"), {"e": victim})  # fixed names
        conn.execute(sa.text("DELETE FROM outbox WHERE payload LIKE :p"), {"p": f"%{victim}%"})
        conn.execute(sa.text("DELETE FROM enrollment WHERE id = :e"), {"e": victim})
    final = assert_tally_exact(services)
    assert sum(final["segments"].values()) == 9


def test_concurrent_writers_keep_the_tally_exact(services, clock):
    """Several connections at once (on PostgreSQL, several shards): enrolling and finishing sends."""
    enroll(services, 20)
    errors = []

    def enroll_some(n: int) -> None:
        try:
            for _ in range(n):
                enroll(services, 5, red_systems=1)
        except Exception as exc:  # the assertion below reports it
            errors.append(exc)

    def cancel_some() -> None:
        try:
            for _ in range(10):
                with db.write_transaction(services.engine) as conn:
                    conn.execute(sa.text(
                        "UPDATE send SET status = 'cancelled' WHERE id IN (SELECT id FROM send "
                        "WHERE status = 'scheduled' AND step = 7 ORDER BY id LIMIT 5)"))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=enroll_some, args=(8,)) for _ in range(3)] + [threading.Thread(target=cancel_some)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    final = assert_tally_exact(services)
    assert sum(final["segments"].values()) == 20 + 3 * 8 * 5


def test_the_migration_counts_an_existing_database(make_settings, clock):
    settings = make_settings()
    engine = db.create_db_engine(settings.database_url)
    try:
        move_to_revision(engine, settings.database_url, "0004")
        services = build_services(settings, mailer=FakeMailer(), clock=clock)
        # Rows written before the tally existed (0004's schema has every column enroll_now writes).
        enroll(services, 7, red_systems=2)
        enroll(services, 3)
        with db.write_transaction(engine) as conn:
            conn.execute(sa.text("UPDATE send SET status = 'sent', delivered_at = due_at WHERE step = 1"))
        db.upgrade(engine)
        assert assert_tally_exact(services)["segments"] == {"CRITICAL": 7, "OPTIMIZE": 3}
        move_to_revision(engine, settings.database_url, "0004", down=True)
        with engine.connect() as conn:
            assert "tally" not in sa.inspect(conn).get_table_names()
        db.upgrade(engine)
        assert_tally_exact(services)
        services.close()
    finally:
        engine.dispose()


# SQLite's julianday() rounds a time to the millisecond: a signup this late on 1 December was
# counted on the 2nd.
LAST_MOMENT = datetime(2025, 12, 1, 23, 59, 59, 999_700, tzinfo=UTC)


def signups_per_day(services) -> Counter:
    """The tally's signups by day, whatever the segment (checked against a recount first)."""
    per_day = Counter()
    for (day, _), n in assert_tally_exact(services)["days"].items():
        per_day[day] += n
    return per_day


def test_a_signup_in_the_last_moment_of_a_day_counts_on_that_day(services, clock):
    clock.now = LAST_MOMENT
    enroll(services, 2)
    clock.now = datetime(2025, 12, 2, tzinfo=UTC)
    enroll(services, 1)
    assert signups_per_day(services) == {date(2025, 12, 1): 2, date(2025, 12, 2): 1}


def test_the_upgrade_moves_signups_counted_a_day_late(make_settings, clock):
    """A database whose tally counted such a signup on the wrong day is counted right once upgraded."""
    settings = make_settings()
    engine = db.create_db_engine(settings.database_url)
    try:
        move_to_revision(engine, settings.database_url, "0010")
        services = build_services(settings, mailer=FakeMailer(), clock=clock)
        clock.now = LAST_MOMENT
        enroll(services, 3)
        db.upgrade(engine)
        assert signups_per_day(services) == {date(2025, 12, 1): 3}
        services.close()
    finally:
        engine.dispose()
