"""`forget` racing a signup for the same address: whichever way they interleave, nothing of the person is kept.

PostgreSQL only: SQLite's BEGIN IMMEDIATE already makes the two take turns.
"""

import threading
import time

import pytest
import sqlalchemy as sa

from core import db, enrollments, erasure
from core.intake import enroll_now
from core.statuses import SignupOutcome
from tests.support import rows, signup_request

pytestmark = pytest.mark.parametrize("backend", ["postgres"])
EMAIL = "gina@example.com"


def _signed_up(services) -> None:
    enroll_now(services, [signup_request(email=EMAIL, first_name="Gina", business_name="Gina's Garden")])
    enroll_now(services, [signup_request(email="someone.else@example.com")])  # first-use rows (the salt) exist


def _nothing_of_gina_is_kept(services) -> None:
    contacts = rows(services.engine, "SELECT c.email, c.first_name, c.business_name, e.status FROM contact c "
                                     "LEFT JOIN enrollment e ON e.contact_id = c.id WHERE c.email <> :other",
                    other="someone.else@example.com")
    assert [(c["email"].endswith("@erased.invalid"), c["first_name"], c["business_name"], c["status"])
            for c in contacts] == [(True, None, None, "cancelled")]
    payloads = [r["payload"] for r in rows(services.engine, "SELECT payload FROM signup")]
    assert not [p for p in payloads if "gina" in p.lower()]


def _wait_blocked_or_done(services, thread: threading.Thread) -> None:
    """Until the thread has finished or waits on a lock (the writer it races then goes first)."""
    deadline = time.monotonic() + 10
    while thread.is_alive() and time.monotonic() < deadline:
        with services.engine.connect() as conn:
            if conn.scalar(sa.text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                   "AND wait_event_type = 'Lock'")):
                return
        time.sleep(0.02)


def test_a_signup_arriving_while_forget_commits_is_refused_and_restores_nothing(services):
    _signed_up(services)
    forgetter = services.engine.connect()
    forgetter.begin()
    erasure.forget(forgetter, EMAIL, actor="cli", now=services.clock())  # done, not yet committed
    results: list = []
    intake = threading.Thread(target=lambda: results.extend(
        enroll_now(services, [signup_request(email=EMAIL, first_name="Gina", business_name="Gina's Garden")])))
    intake.start()
    _wait_blocked_or_done(services, intake)
    forgetter.commit()
    forgetter.close()
    intake.join(timeout=30)

    [again] = results
    assert again.outcome is SignupOutcome.REFUSED
    _nothing_of_gina_is_kept(services)


def test_forget_committing_inside_a_signups_batch_never_lets_the_address_back_in(services, monkeypatch):
    _signed_up(services)
    ensure_contacts, forgetting = enrollments._ensure_contacts, []

    def forget_meanwhile(conn, requests, now):  # the batch has checked the erasures; now `forget` runs
        def run():
            with db.write_transaction(services.engine) as other:
                erasure.forget(other, EMAIL, actor="cli", now=now)

        forgetting.append(threading.Thread(target=run))
        forgetting[0].start()
        _wait_blocked_or_done(services, forgetting[0])
        return ensure_contacts(conn, requests, now)

    monkeypatch.setattr(enrollments, "_ensure_contacts", forget_meanwhile)
    enroll_now(services, [signup_request(email=EMAIL, first_name="Gina", red_systems=2)])
    forgetting[0].join(timeout=30)

    _nothing_of_gina_is_kept(services)
