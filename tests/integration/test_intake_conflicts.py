"""Intake batches that deadlock on PostgreSQL's tally rows: the loser runs again instead of failing its signups.

Each backend adds to the tally shard of its pid (modulo 8). Two API processes whose backends share a
shard, each committing a batch that enrols into one segment and re-segments another sequence out of
the other's, lock the two `signups:<segment>` rows in opposite orders. SQLite has one writer at a time.
"""

import threading
import time

import pytest

from core import db, repo
from core.enrollments import enroll_batch
from core.intake import enroll_now
from core.statuses import SignupOutcome
from tests.support import rows, signup_request

SHARDS = 8  # core/migrations/versions/0005_tally.py


def _pid(conn) -> int:
    return conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()


def _connection_on_the_shard_of(engine, pid: int):
    """A connection of `engine` whose backend adds to the same tally shard as backend `pid`."""
    opened = []
    try:
        while True:
            conn = engine.connect()
            if _pid(conn) % SHARDS == pid % SHARDS:
                conn.rollback()
                return conn
            opened.append(conn)
    finally:
        for other in opened:
            other.close()


@pytest.mark.parametrize("backend", ["postgres"])
def test_a_batch_that_deadlocks_with_another_is_run_again_and_every_signup_is_answered(services, clock,
                                                                                        monkeypatch):
    enroll_now(services, [signup_request(email="b@example.com", red_systems=2),   # CRITICAL
                          signup_request(email="d@example.com", red_systems=1)])  # URGENT
    services.engine.dispose()
    with services.engine.connect() as pooled:  # now the one connection the pool holds: enroll_now's next
        intake_pid = _pid(pooled)
    other_engine = db.create_db_engine(services.settings.database_url)
    other = _connection_on_the_shard_of(other_engine, intake_pid)
    update_enrollments, both_enrolled = repo.update_enrollments, threading.Barrier(2, timeout=10)

    def re_segment_once_both_have_enrolled(conn, updates):
        if not both_enrolled.broken:
            try:
                both_enrolled.wait()
            except threading.BrokenBarrierError:
                pass
            both_enrolled.abort()  # once only: a rerun goes straight through
            if _pid(conn) != intake_pid:
                time.sleep(0.3)  # the intake waits first, so PostgreSQL picks it as the deadlock's victim
        return update_enrollments(conn, updates)

    monkeypatch.setattr(repo, "update_enrollments", re_segment_once_both_have_enrolled)

    def other_process():  # enrols URGENT, moves d from URGENT to CRITICAL
        with other.begin():
            enroll_batch(other, [signup_request(email="c@example.com", red_systems=1),
                                 signup_request(email="d@example.com", red_systems=2)], clock(), test_mode=False)

    thread = threading.Thread(target=other_process)
    thread.start()
    # Enrols CRITICAL, moves b from CRITICAL to URGENT.
    results = enroll_now(services, [signup_request(email="a@example.com", red_systems=2),
                                    signup_request(email="b@example.com", red_systems=1)])
    thread.join(timeout=30)
    other.close()
    other_engine.dispose()

    assert [r.outcome for r in results] == [SignupOutcome.ENROLLED, SignupOutcome.UPDATED]
    segments = rows(services.engine, "SELECT c.email, e.segment FROM enrollment e JOIN contact c "
                                     "ON c.id = e.contact_id ORDER BY c.email")
    assert [(r["email"][0], r["segment"]) for r in segments] == [
        ("a", "CRITICAL"), ("b", "URGENT"), ("c", "URGENT"), ("d", "CRITICAL")]
