"""Group commit for the webhook: concurrent signups share one transaction.

One ORM transaction per request spends most of its time committing. Here request
handlers hand their signup to a single writer thread, which drains whatever has queued
up and commits it all at once, then answers every waiting request.
"""

import logging
import queue
import threading
import time
from concurrent.futures import Future

from core import db, switches
from core.bootstrap import Services
from core.enrollments import EnrollResult, SignupRequest, enroll_batch

log = logging.getLogger(__name__)
MAX_BATCH = 256
# How long the writer lingers for more signups once one arrives. Concurrent requests reach
# the queue a few hundred microseconds apart; a short wait lets one commit carry them all.
GATHER_SECONDS = 0.002


def enroll_now(services: Services, requests: list[SignupRequest]) -> list[EnrollResult]:
    """Enroll a batch in one transaction, synchronously (dashboard, imports, the writer thread)."""
    with db.write_transaction(services.engine) as conn:
        state = switches.read(conn)
        results = enroll_batch(
            conn, requests, services.clock(), test_mode=state.test_mode,
            notion_enabled=services.settings.notion_configured,
            discord_enabled=services.settings.discord_configured,
        )
    if any(not r.duplicate for r in results):
        services.wake.set()
    return results


class GroupCommitWriter:
    """A single writer thread that commits queued signups in batches."""

    def __init__(self, services: Services):
        self._services = services
        self._queue: queue.Queue[tuple[SignupRequest, Future] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="intake-writer", daemon=True)
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def stop(self) -> None:
        if self._started:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._started = False

    def submit(self, request: SignupRequest) -> Future:
        """Queue a signup; the future resolves to its EnrollResult once committed."""
        self.start()
        future: Future = Future()
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
            self._commit(batch)

    def _commit(self, batch: list[tuple[SignupRequest, Future]]) -> None:
        try:
            results = enroll_now(self._services, [req for req, _ in batch])
        except Exception as exc:  # every waiting request must get an answer, never hang
            if len(batch) > 1:
                # Commit one by one so a single poisonous signup cannot fail its neighbours.
                for single in batch:
                    self._commit([single])
                return
            log.exception("intake failed", extra={"action": "intake"})
            batch[0][1].set_exception(exc)
            return
        for (_, fut), result in zip(batch, results, strict=True):
            fut.set_result(result)
