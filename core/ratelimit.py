"""A thread-safe token bucket that paces calls to a provider's per-second request limit, and the
reading of a provider's Retry-After.

Pure logic: time is read from an injected monotonic `clock` and waiting goes through an
injected `sleep`, so tests drive it with a fake clock and never really wait.
"""

import math
import threading
import time
from collections.abc import Callable
from datetime import UTC
from email.utils import parsedate_to_datetime

# Float arithmetic can leave a bucket at 0.9999999 after exactly the computed wait.
_EPSILON = 1e-9


class TokenBucket:
    """Allows `rate` calls per second on average and bursts of up to `capacity` calls."""

    def __init__(
        self,
        rate: float,
        capacity: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if rate <= 0:
            raise ValueError("rate must be a positive number of calls per second")
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._rate = float(rate)
        self._fixed_capacity = capacity  # None: the burst follows the rate when it is resized
        self._capacity = _capacity_for(rate, capacity)
        self._tokens = self._capacity
        self._updated = clock()
        self._hold_until = float("-inf")

    @property
    def rate(self) -> float:
        """Calls allowed per second."""
        return self._rate

    @property
    def capacity(self) -> float:
        """The largest burst allowed after a quiet spell."""
        return self._capacity

    @property
    def tokens(self) -> float:
        """Calls that could start right now, ignoring any pause."""
        with self._lock:
            self._refill(self._clock())
            return self._tokens

    def acquire(self) -> float:
        """Block until one call may start, take its token and return the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                self._refill(now)
                wait = max(self._hold_until - now, (1.0 - self._tokens) / self._rate)
                if wait <= _EPSILON:
                    self._tokens -= 1.0
                    return waited
            # Sleep outside the lock so other threads can still adjust the bucket;
            # then look again, because a pause may have arrived meanwhile.
            self._sleep(wait)
            waited += wait

    def resize(self, rate: float, capacity: float | None = None) -> None:
        """Change the rate (and burst size, by default one second's worth) keeping saved tokens."""
        if rate <= 0:
            raise ValueError("rate must be a positive number of calls per second")
        with self._lock:
            self._refill(self._clock())
            self._rate = float(rate)
            self._capacity = _capacity_for(rate, capacity)
            self._tokens = min(self._tokens, self._capacity)

    def pause(self, seconds: float) -> None:
        """Let no call start for `seconds`, e.g. after the provider answered 429 with retry-after."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            self._hold_until = max(self._hold_until, now + max(seconds, 0.0))

    def observe(
        self,
        limit: float | None = None,
        remaining: float | None = None,
        reset: float | None = None,
        elapsed: float = 0.0,
    ) -> None:
        """Adjust to the provider's `ratelimit-limit`, `-remaining` and `-reset` response headers.

        `limit` calls per second becomes the new rate (and burst, unless fixed). The server's own
        count wins over ours, because other processes may share the API key, so tokens never
        exceed `remaining`. When nothing remains, nothing starts for one call interval, or for
        `reset` seconds if sooner: providers round `reset` up to whole seconds, and holding for
        all of it stalls every call for up to a second; a real 429 still pauses for retry-after.
        The server counted at the start of the call, `elapsed` seconds ago, so what has
        accrued since then is not taken away.
        """
        if limit is not None and limit > 0 and limit != self._rate:
            self.resize(limit, self._fixed_capacity)
        with self._lock:
            now = self._clock()
            self._refill(now)
            if remaining is not None:
                accrued = max(elapsed, 0.0) * self._rate
                self._tokens = min(self._tokens, max(remaining, 0.0) + accrued)
                if remaining <= 0 and reset is not None and reset > 0:
                    hold = min(reset, 1.0 / self._rate) - max(elapsed, 0.0)
                    self._hold_until = max(self._hold_until, now + hold)

    def _refill(self, now: float) -> None:
        # Tokens accrue during a pause too: a provider's window resets to its full quota.
        elapsed = max(now - self._updated, 0.0)
        self._tokens = min(self._capacity, self._tokens + elapsed * self._rate)
        self._updated = now


def _capacity_for(rate: float, capacity: float | None) -> float:
    # Below one token the bucket could never grant a call, so a burst is at least one call.
    return max(1.0, float(capacity if capacity is not None else rate))


def retry_after_seconds(value: str | float | None, *, date: str | None = None,
                        now: float | None = None) -> float | None:
    """Seconds a Retry-After asks to wait: delay-seconds, or an HTTP-date (RFC 9110 §10.2.3) counted from
    the response's own `date` header when given (so our clock's skew does not matter), else from `now`
    (Unix time, default the wall clock). None when it says nothing usable."""
    if value is None:
        return None
    text = str(value).strip()
    try:
        seconds = float(text)
    except ValueError:
        until = _http_date(text)
        since = _http_date(date) if date else None
        if until is None:
            return None
        seconds = until - (since if since is not None else time.time() if now is None else now)
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def _http_date(text: str) -> float | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
