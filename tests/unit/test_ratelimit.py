import threading
import time
from datetime import UTC, datetime

import pytest

from core.ratelimit import TokenBucket, retry_after_seconds


class FakeTime:
    """A clock that only moves when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


def bucket(fake: FakeTime, rate: float = 2.0, capacity: float | None = None) -> TokenBucket:
    return TokenBucket(rate, capacity, clock=fake.clock, sleep=fake.sleep)


def test_a_full_bucket_lets_a_burst_of_its_capacity_through_without_waiting(fake):
    b = bucket(fake, rate=5)
    assert [b.acquire() for _ in range(5)] == [0.0] * 5
    assert fake.slept == []


def test_once_empty_calls_are_paced_at_the_rate(fake):
    b = bucket(fake, rate=2)
    b.acquire()
    b.acquire()
    assert b.acquire() == pytest.approx(0.5)
    assert b.acquire() == pytest.approx(0.5)
    assert fake.now == pytest.approx(1001.0)


def test_tokens_refill_with_time_but_never_beyond_capacity(fake):
    b = bucket(fake, rate=4)
    for _ in range(4):
        b.acquire()
    fake.now += 0.5
    assert b.tokens == pytest.approx(2.0)
    fake.now += 60
    assert b.tokens == pytest.approx(4.0)


def test_a_rate_below_one_per_second_still_grants_one_call_at_a_time(fake):
    b = bucket(fake, rate=0.5)
    assert b.capacity == 1.0
    b.acquire()
    assert b.acquire() == pytest.approx(2.0)


def test_a_non_positive_rate_is_refused(fake):
    with pytest.raises(ValueError):
        bucket(fake, rate=0)
    with pytest.raises(ValueError):
        bucket(fake).resize(-1)


def test_a_pause_holds_every_call_until_it_ends(fake):
    b = bucket(fake, rate=10)
    b.pause(3)
    assert b.acquire() == pytest.approx(3.0)
    # Tokens kept accruing during the pause, so the next calls go at once.
    assert b.acquire() == 0.0


def test_a_shorter_pause_never_shortens_a_longer_one(fake):
    b = bucket(fake)
    b.pause(5)
    b.pause(1)
    assert b.acquire() == pytest.approx(5.0)


def test_the_ratelimit_limit_header_resizes_rate_and_burst(fake):
    b = bucket(fake, rate=2)
    b.observe(limit=5)
    assert (b.rate, b.capacity) == (5.0, 5.0)


def test_resizing_keeps_no_more_tokens_than_the_new_capacity(fake):
    b = bucket(fake, rate=10)
    b.resize(3)
    assert b.tokens == pytest.approx(3.0)


def test_the_servers_remaining_count_caps_our_tokens(fake):
    b = bucket(fake, rate=5)
    b.observe(limit=5, remaining=1, reset=1)
    assert b.tokens == pytest.approx(1.0)
    assert b.acquire() == 0.0


def test_what_accrued_since_the_server_counted_is_not_taken_away(fake):
    b = bucket(fake, rate=2)
    b.observe(remaining=0, elapsed=0.5)  # counted half a second ago, at two calls a second: one call since
    assert b.tokens == pytest.approx(1.0)


def test_a_limit_header_of_zero_is_ignored_not_taken_as_a_rate(fake):
    b = bucket(fake, rate=2)
    b.observe(limit=0)
    assert (b.rate, b.capacity) == (2.0, 2.0)


def test_nothing_remaining_holds_calls_for_one_interval_not_the_rounded_up_reset(fake):
    b = bucket(fake, rate=5)
    b.observe(limit=5, remaining=0, reset=1)
    assert b.acquire() == pytest.approx(0.2)


def test_a_fixed_burst_survives_a_resize_from_the_headers(fake):
    b = bucket(fake, rate=2, capacity=1)
    b.observe(limit=5)
    assert (b.rate, b.capacity) == (5.0, 1.0)


def test_headers_that_say_nothing_change_nothing(fake):
    b = bucket(fake, rate=3)
    b.observe()
    assert (b.rate, b.tokens) == (3.0, 3.0)


def test_concurrent_callers_never_start_faster_than_the_rate():
    # Real threads and real time: 20 callers at 200/s with bursts of one need at least 19 gaps.
    b = TokenBucket(200, capacity=1)
    threads = [threading.Thread(target=b.acquire) for _ in range(20)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert time.monotonic() - start >= 19 / 200 - 0.005


@pytest.mark.parametrize("value, expected", [("7", 7.0), ("0.5", 0.5), (" 3 ", 3.0), (2, 2.0), ("-4", 0.0)])
def test_retry_after_in_seconds_is_read_as_seconds(value, expected):
    assert retry_after_seconds(value) == expected


def test_retry_after_as_an_http_date_counts_from_the_responses_own_date():
    # RFC 9110 §10.2.3 allows either form; the server's Date header makes it immune to our clock's skew.
    said = retry_after_seconds("Wed, 21 Oct 2026 07:30:00 GMT", date="Wed, 21 Oct 2026 07:28:00 GMT", now=0.0)

    assert said == 120.0


def test_retry_after_as_an_http_date_without_a_date_header_counts_from_now():
    now = datetime(2026, 10, 21, 7, 29, 30, tzinfo=UTC).timestamp()

    assert retry_after_seconds("Wed, 21 Oct 2026 07:30:00 GMT", now=now) == 30.0
    assert retry_after_seconds("Wed, 21 Oct 2026 07:00:00 GMT", now=now) == 0.0  # already past: go now


@pytest.mark.parametrize("value", [None, "", "soon", "nan", "inf", "Wed, 99 Oct 2026 07:30:00 GMT"])
def test_a_retry_after_that_says_nothing_usable_is_none(value):
    assert retry_after_seconds(value) is None
