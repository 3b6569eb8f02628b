"""A database outage in a worker job or the intake writer costs two log lines, not a traceback a second.

The jobs run every second or so. While PostgreSQL restarts or SQLite stays locked, logging each
failed run in full would bury the log (~250 lines/s) and the one line that says what is wrong.
"""

import logging
import threading
import time
from collections.abc import Callable

from core import db
from core.errors import first_line

log = logging.getLogger(__name__)


class WriteFailures:
    """What in this process failed for want of the database lately, for /health to report.

    A database that answers reads but refuses writes (a full disk, a read-only file) looks fine
    to a read; the jobs and the intake know better. A failure counts for MEMORY_SECONDS: the jobs
    retry every few seconds, but the intake only learns of a recovery from its next signup.
    """

    MEMORY_SECONDS = 60.0

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._failing: dict[str, tuple[float, str]] = {}  # what -> (when it last failed, why)

    def failed(self, what: str, reason: str) -> None:
        with self._lock:
            self._failing[what] = (self._clock(), reason)

    def succeeded(self, what: str) -> None:
        with self._lock:
            self._failing.pop(what, None)

    def current(self) -> dict[str, str]:
        """{what: why} for each part that failed within MEMORY_SECONDS and has not worked since."""
        now = self._clock()
        with self._lock:
            return {what: why for what, (at, why) in sorted(self._failing.items()) if now - at <= self.MEMORY_SECONDS}


class DatabaseOutageLog:
    """Logs when one job starts failing for want of the database, and when it works again; the rest at DEBUG."""

    def __init__(self, what: str, action: str, failures: WriteFailures | None = None):
        self._what, self._action, self._failures = what, action, failures
        self._since: float | None = None  # monotonic time of the first failure of the current outage

    @property
    def failing(self) -> bool:
        return self._since is not None

    def failed(self, exc: BaseException) -> None:
        if self._failures is not None:
            self._failures.failed(self._what, first_line(exc))
        if self._since is None:
            self._since = time.monotonic()
            log.warning("%s: the database is unavailable, retrying quietly until it answers: %s",
                        self._what, first_line(exc), extra={"action": self._action})
        log.debug("%s: the database is still unavailable", self._what, exc_info=exc, extra={"action": self._action})

    def succeeded(self) -> None:
        if self._failures is not None:
            self._failures.succeeded(self._what)
        if self._since is not None:
            log.info("%s: the database answers again, after %.0f s", self._what, time.monotonic() - self._since,
                     extra={"action": self._action})
            self._since = None


def guarded(job: Callable[[], object], *, action: str | None = None,
            failures: WriteFailures | None = None) -> Callable[[], None]:
    """`job` made safe for the scheduler: a database outage goes to a DatabaseOutageLog (and to
    `failures`, for /health), any other failure is logged here once with its traceback; nothing is
    raised for APScheduler to log again."""
    name = job.__name__
    outage = DatabaseOutageLog(name, action or name, failures)

    def run() -> None:
        try:
            job()
        except Exception as exc:
            if db.storage_unavailable(exc):
                outage.failed(exc)
            else:
                log.exception("%s failed", name, extra={"action": action or name})
            return
        outage.succeeded()

    run.__name__ = name  # the worker names and identifies its jobs by it
    return run
