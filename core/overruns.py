"""A worker job still running long after its interval: said in the log, once and then every so often.

APScheduler skips a job's run while the last one still runs (max_instances=1) and logs that at every
tick; core.logs drops those lines, since the dispatch job outliving its second is normal. Without this
a job that never returns (a call or a lock that never answers) would be silent for ever, while the
heartbeat, a job of its own, kept the worker looking alive. APScheduler itself never ends such a job
(agronholm/apscheduler#342).
"""

import logging
import threading
import time
from collections.abc import Callable

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
    JobEvent,
)

log = logging.getLogger(__name__)
# Far beyond any job's interval, and beyond a Notion pass's budget; a dispatch pass draining a big
# backlog may take this long, which the line allows for.
LONG_RUN_SECONDS = 300.0


class OverrunWatch:
    """An APScheduler listener (add it with MASK) that warns of a run going on for LONG_RUN_SECONDS or more."""

    MASK = EVENT_JOB_SUBMITTED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED

    def __init__(self, limit: float | None = None, clock: Callable[[], float] = time.monotonic):
        self._limit = LONG_RUN_SECONDS if limit is None else limit
        self._clock = clock
        self._lock = threading.Lock()  # called from the scheduler's thread and from the jobs' threads
        self._started: dict[str, float] = {}  # job id -> when its running instance was submitted
        self._told: dict[str, float] = {}  # job id -> when its overrun was last logged

    def __call__(self, event: JobEvent) -> None:
        now = self._clock()
        with self._lock:
            if event.code == EVENT_JOB_SUBMITTED:
                self._started[event.job_id] = now
            elif event.code == EVENT_JOB_MAX_INSTANCES:
                self._skipped(event.job_id, now)
            else:  # the run ended, one way or another
                since = self._started.pop(event.job_id, None)
                if self._told.pop(event.job_id, None) is not None and since is not None:
                    log.info('job "%s" returned after %.0f s', event.job_id, now - since,
                             extra={"action": "overrun", "job": event.job_id})

    def _skipped(self, job_id: str, now: float) -> None:
        since = self._started.get(job_id)
        if since is None or now - since < self._limit:
            return
        told = self._told.get(job_id)
        if told is not None and now - told < self._limit:
            return
        self._told[job_id] = now
        log.warning('job "%s" has been running for %.0f s and its later runs wait until it returns: a large '
                    "backlog takes a while, but this long it may be stuck (a call or a lock that never returns)",
                    job_id, now - since, extra={"action": "overrun", "job": job_id})
