"""ResendMailer over real HTTP against the Resend stand-in on 127.0.0.1."""

import logging
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import formatdate

import pytest
import resend

from core.bootstrap import build_mailer
from core.errors import AccountMailerError, PermanentMailerError, TransientMailerError
from core.mailers import OutgoingEmail
from core.resend_mailer import ResendMailer, sanitize_tag
from core.settings import load_settings
from tests.standins.resend_api import ResendStandIn

KEY = "re_test_0123456789"
SENDER = "Nurture <hello@example.com>"


class FakeTime:
    """Shared by the mailer's bucket and the stand-in's limiter; moves only when slept on."""

    def __init__(self) -> None:
        self.now = 5000.25
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture(autouse=True)
def sdk_globals_restored(monkeypatch):
    # The SDK keeps its configuration in module globals; put them back after each test.
    for name in ("api_url", "api_key", "default_http_client"):
        monkeypatch.setattr(resend, name, getattr(resend, name))


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


@pytest.fixture
def start(fake):
    """Start a stand-in on the fake clock and point the SDK at it, as RESEND_API_URL would."""
    servers: list[ResendStandIn] = []

    def start_standin(**options) -> ResendStandIn:
        server = ResendStandIn(**{"api_key": KEY, "rate_limit": 100, "clock": fake.clock, **options}).start()
        servers.append(server)
        resend.api_url = server.url
        return server

    yield start_standin
    for server in servers:
        server.stop()


@pytest.fixture
def api(start) -> ResendStandIn:
    return start()


def mailer_for(fake: FakeTime, key: str = KEY, sender: str = SENDER, **options) -> ResendMailer:
    return ResendMailer(key, sender, **{"rate_limit": 100, "clock": fake.clock, "sleep": fake.sleep, **options})


@pytest.fixture
def mailer(fake) -> ResendMailer:
    return mailer_for(fake)


def email(n: int = 1, to: str | None = None) -> OutgoingEmail:
    return OutgoingEmail(
        send_id=f"send-{n}",
        to=to or f"person{n}@example.org",
        subject=f"Step {n}: your systems",
        html=f"<p>Email {n}</p>",
        text=f"Email {n}",
        headers={
            "List-Unsubscribe": f"<https://nurture.test/u/token{n}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        tags={"campaign": "Christmas 2025", "step": str(n), "segment": "red systems"},
    )


def test_one_email_goes_alone_with_its_idempotency_key_headers_and_tags(api, mailer):
    [delivery] = mailer.send([email(1)], idempotency_key="send-1/gen-0")

    [sent] = api.sent
    assert delivery.send_id == "send-1" and delivery.provider_id == sent.id and delivery.accepted
    assert (sent.sender, sent.to, sent.subject) == (SENDER, ["person1@example.org"], "Step 1: your systems")
    assert (sent.html, sent.text) == ("<p>Email 1</p>", "Email 1")
    assert sent.idempotency_key == "send-1/gen-0" and not sent.batch
    assert sent.headers["List-Unsubscribe"] == "<https://nurture.test/u/token1>"
    assert sent.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert sent.tags == [
        {"name": "campaign", "value": "Christmas_2025"},
        {"name": "step", "value": "1"},
        {"name": "segment", "value": "red_systems"},
    ]


def test_several_emails_go_as_one_batch_and_ids_come_back_in_order(api, mailer):
    deliveries = mailer.send([email(1), email(2), email(3)], idempotency_key="batch-1")

    assert api.stats["requests"] == 1
    assert [d.send_id for d in deliveries] == ["send-1", "send-2", "send-3"]
    assert [d.provider_id for d in deliveries] == [s.id for s in api.sent]
    assert [s.to for s in api.sent] == [["person1@example.org"], ["person2@example.org"], ["person3@example.org"]]
    assert all(s.batch and s.idempotency_key == "batch-1" for s in api.sent)


def test_a_permissive_batch_fails_only_the_email_with_an_invalid_address(api, mailer):
    deliveries = mailer.send([email(1), email(2, to="not-an-address"), email(3)], idempotency_key="batch-2")

    assert [d.accepted for d in deliveries] == [True, False, True]
    assert "Invalid `to` field" in deliveries[1].error
    assert [s.id for s in api.sent] == [deliveries[0].provider_id, deliveries[2].provider_id]


def test_replaying_a_batch_with_its_key_returns_the_same_ids_and_sends_nothing_new(api, mailer):
    first = mailer.send([email(1), email(2)], idempotency_key="batch-3")
    again = mailer.send([email(1), email(2)], idempotency_key="batch-3")

    assert again == first
    assert len(api.sent) == 2 and api.stats["replayed"] == 1


def test_replaying_a_single_send_with_its_key_returns_the_same_id(api, mailer):
    assert mailer.send([email(1)], "one") == mailer.send([email(1)], "one")
    assert len(api.sent) == 1


def test_an_answer_lost_after_acceptance_is_transient_and_the_retry_sends_nothing_twice(api, mailer):
    api.fail(None, accept=True)  # Resend took the email, then the connection dropped
    with pytest.raises(TransientMailerError):
        mailer.send([email(1)], "lost-answer")

    [delivery] = mailer.send([email(1)], "lost-answer")

    [sent] = api.sent
    assert delivery.provider_id == sent.id


def test_the_same_key_with_a_different_payload_is_a_permanent_error(api, mailer):
    mailer.send([email(1)], "reused")
    with pytest.raises(PermanentMailerError) as caught:
        mailer.send([email(2)], "reused")
    assert caught.value.status == 409 and "different request payload" in str(caught.value)
    # Recorded on the sends as it is: the first call got through, so the emails most likely went.
    assert str(caught.value).startswith("outcome unknown: Resend already took this batch under its key")


def test_the_same_key_while_its_first_call_is_still_in_flight_is_transient_and_sends_nothing_twice(start, fake):
    api = start(latency_ms=400)
    first: list = []
    slow = threading.Thread(target=lambda: first.extend(mailer_for(fake).send([email(1)], "in-flight")))
    slow.start()
    # Wait until the first call is inside the stand-in: a fixed sleep lost that race on a busy machine.
    deadline = time.monotonic() + 5
    while not api.in_flight("in-flight") and time.monotonic() < deadline:
        time.sleep(0.005)
    assert api.in_flight("in-flight"), "the first call never reached the stand-in"

    with pytest.raises(TransientMailerError) as caught:
        mailer_for(fake).send([email(1)], "in-flight")
    slow.join()
    [again] = mailer_for(fake).send([email(1)], "in-flight")

    assert caught.value.status == 409 and "concurrent_idempotent_requests" in str(caught.value)
    assert not caught.value.refused  # the first call may yet send it: the retry window counts
    [sent] = api.sent
    assert first[0].provider_id == again.provider_id == sent.id


def test_a_429_is_transient_carries_retry_after_and_pauses_the_next_call(api, mailer, fake):
    api.fail(429, retry_after=7, message="Too many requests.")
    with pytest.raises(TransientMailerError) as caught:
        mailer.send([email(1)], "k429")
    assert (caught.value.status, caught.value.retry_after) == (429, 7.0)

    mailer.send([email(1)], "k429")
    assert sum(fake.slept) == pytest.approx(7.0)


def test_a_429_asking_for_an_hour_holds_the_next_call_only_briefly(api, mailer, fake):
    # A 429 may ask for hours (a quota). Sleeping that long in the process would
    # hold a claimed batch far past its lease and hang a --once run; the batch's backoff waits instead.
    api.fail(429, retry_after=3600, message="You have reached your daily email sending quota.")
    with pytest.raises(TransientMailerError) as caught:
        mailer.send([email(1)], "kquota")
    assert caught.value.retry_after == 3600.0

    mailer.send([email(2)], "kother")
    assert 0 < sum(fake.slept) <= 10


def test_a_daily_quota_waits_for_midnight_utc_whatever_its_retry_after_says(api, mailer):
    # docs/api-reference/rate-limit: the (free plan's) daily quota is a UTC calendar day and resets at
    # midnight UTC; a retry-after, if the 429 carries one, is the per-second window's.
    api.fail(429, retry_after=1, name="daily_quota_exceeded",
             message="You have exceeded your daily email sending quota.")
    with pytest.raises(TransientMailerError) as caught:
        mailer.send([email(1)], "kday")
    now = datetime.now(UTC)
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    assert caught.value.retry_after == pytest.approx((midnight - now).total_seconds(), abs=5)
    assert caught.value.refused  # nothing was sent


def test_a_monthly_quota_is_an_account_error_that_waiting_a_little_cannot_clear(api, mailer):
    # Only an upgrade or the next month ends it: the breaker pauses sending and tells the operator.
    api.fail(429, name="monthly_quota_exceeded", message="You have exceeded your monthly email sending quota.")
    with pytest.raises(AccountMailerError, match="monthly_quota_exceeded"):
        mailer.send([email(1)], "kmonth")


def test_a_429_whose_retry_after_is_nan_pauses_the_next_call_as_one_without_it(api, mailer, fake):
    api.fail(429, retry_after=float("nan"))
    with pytest.raises(TransientMailerError):
        mailer.send([email(1)], "knan")

    mailer.send([email(2)], "kafter")
    assert sum(fake.slept) == pytest.approx(1.0)


def test_a_retry_after_given_as_an_http_date_is_honoured_as_the_seconds_until_then(api, mailer, fake):
    # RFC 9110 allows an HTTP-date; the stand-in's own Date header is what it is counted from.
    api.fail(503, retry_after=formatdate(time.time() + 120, usegmt=True))
    with pytest.raises(TransientMailerError) as caught:
        mailer.send([email(1)], "kdate")
    assert caught.value.retry_after == pytest.approx(120, abs=2)

    api.fail(429, retry_after=formatdate(time.time() + 5, usegmt=True))
    with pytest.raises(TransientMailerError):
        mailer.send([email(1)], "kdate")
    mailer.send([email(1)], "kdate")
    assert sum(fake.slept) == pytest.approx(5, abs=2)


def test_the_standins_own_rate_limit_answer_is_transient_with_retry_after(start, fake):
    start(rate_limit=1)
    # Two mailers, as two processes sharing one key: the second knows nothing of the first's call.
    mailer_for(fake).send([email(1)], "first")
    with pytest.raises(TransientMailerError) as caught:
        mailer_for(fake).send([email(2)], "second")
    assert caught.value.status == 429 and caught.value.retry_after == 1.0


@pytest.mark.parametrize("status, name", [(404, "not_found"), (405, "method_not_allowed")])
def test_an_api_address_without_the_send_endpoint_is_an_account_error_not_the_emails_fault(api, mailer, status, name):
    # A wrong RESEND_API_URL (or a proxy in the way) answers every send alike: the breaker must hold the
    # emails, not fail each lead's email for good.
    api.fail(status, message="The requested endpoint does not exist.", name=name)
    with pytest.raises(AccountMailerError) as caught:
        mailer.send([email(1)], "k-endpoint")
    assert caught.value.status == status and "RESEND_API_URL" in str(caught.value)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_server_error_is_transient(api, mailer, status):
    api.fail(status)
    with pytest.raises(TransientMailerError) as caught:
        mailer.send([email(1), email(2)], "k5xx")
    assert caught.value.status == status
    assert api.sent == []


def test_a_503_with_retry_after_carries_it_so_the_batch_waits_that_long(api, mailer):
    api.fail(503, retry_after=120, message="Down for maintenance.")
    with pytest.raises(TransientMailerError) as caught:
        mailer.send([email(1)], "k503")
    assert (caught.value.status, caught.value.retry_after) == (503, 120.0)


def test_a_wrong_api_key_is_an_account_error_that_never_echoes_the_key(api, fake):
    wrong = "re_wrong_key_987"
    with pytest.raises(AccountMailerError) as caught:
        mailer_for(fake, key=wrong).send([email(1)], "k401")
    assert caught.value.status == 401 and "API key is invalid" in str(caught.value)
    assert wrong not in str(caught.value)


def test_an_unverified_sender_domain_is_an_account_error(start, fake):
    start(domains={"example.com": "verified"})
    with pytest.raises(AccountMailerError) as caught:
        mailer_for(fake, sender="hello@unverified.test").send([email(1)], "k403")
    assert caught.value.status == 403 and "unverified.test domain is not verified" in str(caught.value)


def test_an_unverified_sender_domain_refusing_a_whole_permissive_batch_is_an_account_error(start, fake):
    # Whether Resend lists a sender-domain refusal per email in permissive mode or refuses the call, the
    # docs do not say; the stand-in lists it per email. Either way it is the operator's to fix, not each
    # lead's step to fail for good.
    start(domains={"example.com": "verified"})
    with pytest.raises(AccountMailerError, match="unverified.test domain is not verified"):
        mailer_for(fake, sender="hello@unverified.test").send([email(1), email(2)], "k403batch")


def test_an_invalid_address_alone_is_a_permanent_error_with_the_providers_message(api, mailer):
    with pytest.raises(PermanentMailerError) as caught:
        mailer.send([email(1, to="nobody")], "k422")
    assert not isinstance(caught.value, AccountMailerError)
    assert caught.value.status == 422 and "Invalid `to` field" in str(caught.value)


def test_an_unreachable_api_is_transient(fake, mailer):
    with socket.socket() as probe:  # a port that was free a moment ago is very likely closed now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    resend.api_url = f"http://127.0.0.1:{port}"
    with pytest.raises(TransientMailerError) as caught:
        mailer.send([email(1)], "refused")
    assert caught.value.status is None


def test_a_slow_api_times_out_as_a_transient_error(start, fake):
    start(latency_ms=400)
    with pytest.raises(TransientMailerError, match="unreachable"):
        mailer_for(fake, timeout=0.05).send([email(1)], "slow")


def test_ratelimit_headers_resize_the_bucket(start, mailer):
    start(rate_limit=7)
    assert mailer.bucket.rate == 100
    mailer.send([email(1)], "resize")
    assert mailer.bucket.rate == 7.0


def test_pacing_from_the_headers_keeps_every_call_within_the_limit(start, fake):
    api = start(rate_limit=2)
    mailer = mailer_for(fake, rate_limit=2)
    for n in range(1, 7):
        mailer.send([email(n)], f"paced-{n}")
    assert api.stats["rate_limited"] == 0 and len(api.sent) == 6
    assert sum(fake.slept) >= 2.0


def test_more_than_100_emails_are_refused_before_any_call(api, mailer):
    with pytest.raises(ValueError):
        mailer.send([email(n) for n in range(101)], "too-many")
    assert api.stats["requests"] == 0


def test_no_emails_make_no_call(api, mailer):
    assert mailer.send([], "empty") == []
    assert api.stats["requests"] == 0


def test_tag_values_keep_only_what_resend_allows():
    assert sanitize_tag("Christmas 2025") == "Christmas_2025"
    assert sanitize_tag("café/orange-1") == "caf__orange-1"
    assert len(sanitize_tag("x" * 300)) == 256


def test_check_lists_the_domains_and_whether_each_is_verified(start, mailer):
    start(domains={"example.com": "verified", "news.example.com": "pending"})
    status = mailer.check()
    assert "example.com (verified)" in status and "news.example.com (pending)" in status
    assert "\n" not in status


def test_check_and_sending_accept_a_partially_verified_domain(start, mailer):
    # docs/dashboard/domains/manage-domains: partially_verified (receiving still pending, or one of two
    # sending records) means "you can send normally".
    start(domains={"example.com": "partially_verified"})
    assert "example.com (partially_verified)" in mailer.check()
    assert mailer.send([email(1)], "kpartial")[0].accepted


def test_check_refuses_a_sender_whose_domain_is_not_verified(start, fake):
    start(domains={"example.com": "pending"})
    with pytest.raises(AccountMailerError, match="example.com is not verified"):
        mailer_for(fake).check()


def test_check_with_a_wrong_key_is_an_account_error(api, fake):
    with pytest.raises(AccountMailerError):
        mailer_for(fake, key="re_wrong").check()


def test_check_treats_resends_400_invalid_key_answer_as_an_account_error(api, mailer):
    api.fail(400, message="API key is invalid", name="validation_error", path="/domains")
    with pytest.raises(AccountMailerError):
        mailer.check()


def test_check_accepts_a_sending_only_key(api, mailer):
    api.fail(401, name="restricted_api_key", message="This API key is restricted to only send emails.")
    assert "sending only" in mailer.check()


def test_check_refuses_a_key_that_is_not_active_though_resend_names_it_restricted_too(api, mailer):
    # docs/api-reference/errors: restricted_api_key is 401 for a sending-only key, and 403 "API key is not
    # active" for one that can send nothing at all.
    api.fail(403, name="restricted_api_key", message="API key is not active", path="/domains")
    with pytest.raises(AccountMailerError, match="not active"):
        mailer.check()


def test_check_on_an_outage_is_transient(api, mailer):
    api.fail(503)
    with pytest.raises(TransientMailerError):
        mailer.check()


def test_the_key_and_bodies_stay_out_of_logs_and_repr(api, mailer, caplog):
    caplog.set_level(logging.DEBUG)
    mailer.send([email(1), email(2)], "logged")
    assert KEY not in caplog.text and "Email 1" not in caplog.text
    assert KEY not in repr(mailer)


@pytest.mark.parametrize("call", ["send", "check"])
def test_a_key_that_requests_refuses_as_a_header_is_never_quoted_in_the_error(api, fake, call):
    # requests quotes a header value it refuses; a key copied with a stray carriage return (a .env
    # saved on Windows and read by docker --env-file) would reach the log, the dashboard and the audit trail.
    key = KEY + "\r"
    mailer = mailer_for(fake, key=key)
    with pytest.raises(TransientMailerError) as caught:
        mailer.send([email()], "key-1") if call == "send" else mailer.check()
    assert KEY not in str(caught.value) and "RESEND_API_KEY" in str(caught.value)
    chain = [caught.value.__cause__, caught.value.__context__ if not caught.value.__suppress_context__ else None]
    assert not any(KEY in str(link) for link in chain if link is not None)


def test_a_resend_api_url_in_the_dot_env_file_reaches_the_sdk(start, monkeypatch, tmp_path):
    # The SDK reads only the process environment: a .env line used to be ignored, and every email went to
    # Resend itself instead of the proxy or stand-in the operator named.
    api = start()
    resend.api_url = "http://127.0.0.1:9/never-called"  # what the SDK took from an environment without it
    monkeypatch.delenv("RESEND_API_URL", raising=False)
    dot_env = tmp_path / ".env"
    dot_env.write_text(f"RESEND_API_KEY={KEY}\nRESEND_FROM_EMAIL=hello@example.com\nRESEND_API_URL={api.url}\n",
                       encoding="utf-8")
    for name in ("RESEND_API_KEY", "RESEND_FROM_EMAIL", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)

    mailer = build_mailer(load_settings(_env_file=dot_env))
    [delivery] = mailer.send([email(1)], idempotency_key="send-1/gen-0")

    assert [sent.id for sent in api.sent] == [delivery.provider_id]
