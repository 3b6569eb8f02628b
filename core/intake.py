"""Group commit for the webhook: concurrent signups share one transaction.

One ORM transaction per request spends most of its time committing. Here request
handlers hand their signup to a single writer thread, which drains whatever has queued
up and commits it all at once, then answers every waiting request.
"""

import asyncio
import logging
import queue
import threading
import time

from core import db, switches
from core.bootstrap import Services
from core.checkpointer import WalCheckpointer
from core.db_outages import DatabaseOutageLog
from core.enrollments import EnrollResult, SignupRequest, enroll_batch

log = logging.getLogger(__name__)
MAX_BATCH = 256
# How long the writer lingers for more signups once one arrives. Concurrent requests reach
# the queue a few hundred microseconds apart; a short wait lets one commit carry them all.
GATHER_SECONDS = 0.0005
# Two batches on PostgreSQL can deadlock on the tally's counter rows (one re-segments A to B while
# the other re-segments B to A, or enrols into the segment the first leaves), and one is rolled back.
# That is no outage and no fault of the signups: the batch runs again.
ATTEMPTS = 3
# How long a stop waits for the batch under way and then the last checkpoint, together. The stop runs in the
# API's lifespan shutdown, after uvicorn's grace for requests in flight, and grace and stop must both end within
# the worker's join of its API thread (core/worker.py), itself well within systemd's TimeoutStopSec. A batch
# still running past it is held up by the database (a lock waited on), and waiting longer would not save it.
STOP_SECONDS = 4.0


def enroll_now(services: Services, requests: list[SignupRequest]) -> list[EnrollResult]:
    """Enroll a batch in one transaction, synchronously (dashboard, imports, the writer thread)."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            results = _enroll_once(services, requests)
            break
        except Exception as exc:
            if attempt == ATTEMPTS or not db.crossed_a_concurrent_transaction(exc):
                raise
            log.info("intake batch crossed a concurrent transaction; running it again",
                     extra={"action": "intake", "attempt": attempt})
    if any(not r.duplicate for r in results):
        services.wake.set()
    return results


def _enroll_once(services: Services, requests: list[SignupRequest]) -> list[EnrollResult]:
    with db.write_transaction(services.engine) as conn:
        state = switches.read(conn)
        return enroll_batch(
            conn, requests, services.clock(), test_mode=state.test_mode,
            notion_enabled=services.settings.notion_configured,
            discord_enabled=services.settings.discord_configured, salt=state.erasure_salt,
        )


class GroupCommitWriter:
    """A single writer thread that commits queued signups in batches.

    Requests wait on asyncio futures of their own event loop; each batch is answered with one
    call into that loop rather than one wake-up per request. On SQLite a second thread copies
    the log into the database after commits, so no batch pays for that (core/checkpointer.py).
    """

    def __init__(self, services: Services):
        self._services = services
        self._queue: queue.Queue[tuple[SignupRequest, asyncio.Future] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="intake-writer", daemon=True)
        self._checkpointer = WalCheckpointer(services.engine)
        self._outage = DatabaseOutageLog("intake", action="intake", failures=services.write_failures)
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._checkpointer.start()
            self._thread.start()

    def stop(self) -> None:
        if self._started:
            deadline = time.monotonic() + STOP_SECONDS
            self._queue.put(None)
            self._thread.join(timeout=STOP_SECONDS)
            if self._thread.is_alive():
                log.warning("the intake writer was still committing a batch %.0f s after the stop began; stopping "
                            "without it: whatever it has not committed is rolled back as the process ends",
                            STOP_SECONDS, extra={"action": "shutdown"})
            self._checkpointer.stop(timeout=max(0.0, deadline - time.monotonic()))
            self._started = False

    def submit(self, request: SignupRequest) -> asyncio.Future:
        """Queue a signup (from a running event loop); the future resolves to its EnrollResult once committed."""
        self.start()
        future = asyncio.get_running_loop().create_future()
        self._queue.put((request, future))
        return future

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            deadline = time.monotonic() + GATHER_SECONDS
            while len(batch) < MAX_BATCH:
                try:
                    nxt = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)  # finish this batch, then stop
                    break
                batch.append(nxt)
            started = time.perf_counter()
            outcomes = self._outcomes([req for req, _ in batch])
            self._record(len(batch), time.perf_counter() - started, outcomes)
            self._checkpointer.nudge()
            _answer(batch, outcomes)

    def _record(self, size: int, seconds: float, outcomes: list[EnrollResult | Exception]) -> None:
        metrics = self._services.metrics
        metrics.intake_batch_size.observe(size)
        metrics.intake_commit.observe(seconds)
        for outcome in outcomes:
            label = "failed" if isinstance(outcome, Exception) else outcome.outcome.value
            metrics.intake_signups.labels(label).inc()

    def _outcomes(self, requests: list[SignupRequest]) -> list[EnrollResult | Exception]:
        """Each request's result, or the exception that kept it from being stored (logged here, once)."""
        try:
            results = enroll_now(self._services, requests)
        except Exception as exc:  # every waiting request must get an answer, never hang
            # With the database itself in trouble (locked past busy_timeout, connection lost), trying
            # each signup alone would only wait that long again per signup while every request hangs.
            if db.storage_unavailable(exc):
                self._outage.failed(exc)
            elif len(requests) > 1:
                # Commit one by one so a single poisonous signup cannot fail its neighbours.
                return [outcome for single in requests for outcome in self._outcomes([single])]
            else:
                log.exception("intake failed for %d signup(s)", len(requests), extra={"action": "intake"})
            return [exc] * len(requests)
        self._outage.succeeded()
        return results


def _answer(batch: list[tuple[SignupRequest, asyncio.Future]], outcomes: list[EnrollResult | Exception]) -> None:
    """Hand the outcomes to the waiting requests: one thread-safe call per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list] = {}
    for (_, future), outcome in zip(batch, outcomes, strict=True):
        by_loop.setdefault(future.get_loop(), []).append((future, outcome))
    for loop, settled in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, settled)
        except RuntimeError:  # that loop has closed: nobody is waiting any more
            pass


def _settle(settled: list[tuple[asyncio.Future, EnrollResult | Exception]]) -> None:
    for future, outcome in settled:
        if future.done():  # the request went away (client disconnected)
            continue
        if isinstance(outcome, Exception):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
