"""`forget` while an email of theirs is in flight: the batch is replayed exactly as it was first handed to
Resend, so nobody else in it is recorded failed, and the held address goes once the email settles."""

import pytest
import resend

from core import db, erasure
from core.dispatch import Dispatcher
from core.bootstrap import build_services
from core.intake import enroll_now
from core.resend_mailer import ResendMailer
from core.worker import WorkerJobs
from core.worker_jobs import register_jobs
from tests.standins.resend_api import ResendStandIn
from tests.support import rows, signup_request

KEY = "re_erasure_in_flight"
PEOPLE = [f"p{i}@example.com" for i in range(5)]


@pytest.fixture
def api(monkeypatch):
    for name in ("api_url", "api_key", "default_http_client"):  # the SDK keeps its configuration in globals
        monkeypatch.setattr(resend, name, getattr(resend, name))
    with ResendStandIn(api_key=KEY, rate_limit=0) as server:
        resend.api_url = server.url
        yield server


@pytest.fixture
def services(make_settings, clock, api):
    mailer = ResendMailer(KEY, "Nurture <hello@example.com>", rate_limit=100)
    built = build_services(make_settings(), mailer=mailer, clock=clock, migrate=True)
    try:
        yield built
    finally:
        built.close()


def step_one(services) -> dict[str, tuple[str, str | None]]:
    found = rows(services.engine, "SELECT c.email, s.status, s.last_error FROM send s JOIN contact c "
                                  "ON c.id = s.contact_id WHERE s.step = 1")
    return {r["email"]: (r["status"], r["last_error"]) for r in found}


def held(services) -> list[dict]:
    return rows(services.engine, "SELECT email, first_name FROM erasure_hold")


def test_erasing_someone_whose_batch_awaits_its_replay_fails_nobody_and_the_held_address_goes(services, api, clock):
    enroll_now(services, [signup_request(email=e, first_name=f"Person {e[1]}") for e in PEOPLE])
    api.fail(500, accept=True)  # Resend took the batch, but answered 500: it will be replayed under its key
    Dispatcher(services, "worker-a").run_pass()

    with db.write_transaction(services.engine) as conn:
        erased = erasure.forget(conn, "p0@example.com", actor="cli", now=clock())
    assert erased.held == 1
    assert held(services) == [{"email": "p0@example.com", "first_name": "Person 0"}]
    # The worker's minute job lets the held address go once that email settled, and not before.
    jobs = WorkerJobs(services, "worker-a")
    register_jobs(jobs)
    [release] = [job for job, _ in jobs.schedule() if job.__name__ == "release_erasure_holds"]
    release()
    assert held(services) == [{"email": "p0@example.com", "first_name": "Person 0"}]
    clock.advance(minutes=5)
    Dispatcher(services, "worker-a").run_pass()

    after = step_one(services)
    assert sorted(e.to[0] for e in api.sent) == PEOPLE  # each delivered once: the replay was a no-op
    assert [status for email, (status, _) in after.items() if not email.endswith("@erased.invalid")] == ["sent"] * 4
    assert [after[e] for e in after if e.endswith("@erased.invalid")] == [("sent", None)]
    release()
    assert held(services) == []


def test_an_erasure_with_nothing_in_flight_holds_nothing(services, clock):
    enroll_now(services, [signup_request(email="p0@example.com")])
    with db.write_transaction(services.engine) as conn:
        erased = erasure.forget(conn, "p0@example.com", actor="cli", now=clock())
    assert erased.held == 0 and held(services) == []
