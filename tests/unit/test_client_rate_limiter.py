"""The intake's per-client rate limit: a sliding minute per client, IPv6 counted by /64, bounded memory."""

import pytest

from core.api.intake import ClientRateLimiter, client_key
from tests.support import ManualMonotonic


def test_a_client_gets_its_limit_per_sliding_minute():
    clock = ManualMonotonic()
    limiter = ClientRateLimiter(3, clock=clock)
    assert [limiter.allow("203.0.113.7") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("203.0.113.8"), "another client has its own window"
    clock.now += 59.9
    assert not limiter.allow("203.0.113.7")
    clock.now += 0.2  # the first three hits are a minute old
    assert limiter.allow("203.0.113.7")


def test_addresses_of_one_ipv6_network_share_one_limit():
    limiter = ClientRateLimiter(5, clock=ManualMonotonic())
    answers = [limiter.allow(f"2001:db8:1:2::{i:x}") for i in range(1, 8)]
    assert answers == [True] * 5 + [False] * 2
    assert limiter.allow("2001:db8:1:3::1"), "the next /64 is someone else"


@pytest.mark.parametrize(("address", "key"), [
    ("203.0.113.7", "203.0.113.7"),
    ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
    ("::ffff:203.0.113.7", "203.0.113.7"),  # an IPv4 client seen through a dual-stack socket
    ("testclient", "testclient"),
])
def test_what_a_client_is_counted_by(address, key):
    assert client_key(address) == key


def test_idle_clients_are_forgotten_and_memory_stays_bounded():
    clock = ManualMonotonic()
    limiter = ClientRateLimiter(2, clock=clock)
    limiter.MAX_CLIENTS = 1000
    for i in range(5000):
        limiter.allow(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter._hits) == 1000, "the longest idle clients went first"
    clock.now += 61
    limiter.allow("198.51.100.1")
    assert len(limiter._hits) == 1, "a minute later only the newest client is remembered"
