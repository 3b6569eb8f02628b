"""The worker process: APScheduler jobs, and the intake API served from a thread."""

import logging
import signal
import threading
from datetime import UTC, datetime

import uvicorn
from apscheduler.schedulers.blocking import BlockingScheduler

from core import db, heartbeat
from core.heartbeat import HEARTBEAT_SECONDS
from core.api import create_app
from core.bootstrap import Services

log = logging.getLogger(__name__)


class WorkerJobs:
    """The worker's jobs, each a plain method so `--once` and the scheduler run the same code."""

    def __init__(self, services: Services, worker_id: str):
        self.services = services
        self.worker_id = worker_id
        self._extra: list = []

    def add(self, job, seconds: float) -> None:
        """Register a further job (dispatch, outboxes) with its interval."""
        self._extra.append((job, seconds))

    def heartbeat(self) -> None:
        with db.write_transaction(self.services.engine) as conn:
            heartbeat.beat(conn, self.worker_id, self.services.clock())

    def schedule(self) -> list[tuple]:
        return [(self.heartbeat, HEARTBEAT_SECONDS), *self._extra]

    def run_once(self) -> None:
        for job, _ in self.schedule():
            job()


class ApiThread:
    """Uvicorn in a background thread; the main thread keeps the scheduler and the signals."""

    def __init__(self, services: Services, host: str, port: int):
        config = uvicorn.Config(create_app(services), host=host, port=port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="api", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def run_forever(jobs: WorkerJobs, api: ApiThread | None) -> None:
    """Run every job on its interval until SIGTERM or Ctrl-C, then stop cleanly."""
    scheduler = BlockingScheduler(timezone=UTC)
    for job, seconds in jobs.schedule():
        scheduler.add_job(job, "interval", seconds=seconds, coalesce=True, max_instances=1,
                          next_run_time=datetime.now(UTC), id=job.__name__, misfire_grace_time=None)

    def stop(signum, _frame):
        log.info("stopping on signal %s", signum, extra={"action": "shutdown"})
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if api:
        api.start()
    log.info("worker %s started", jobs.worker_id, extra={"action": "start"})
    try:
        scheduler.start()
    finally:
        if api:
            api.stop()
        jobs.services.close()
        log.info("worker %s stopped", jobs.worker_id, extra={"action": "stop"})
