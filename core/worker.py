"""The worker process: APScheduler jobs, and the intake API served from a thread."""

import logging
import signal
import threading
import time
from datetime import UTC, datetime

import sqlalchemy as sa
import uvicorn
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler

from core import db, heartbeat, intake, singleton
from core.deployment_checks import is_loopback
from core.heartbeat import HEARTBEAT_SECONDS
from core.listening import listen
from core.overruns import OverrunWatch
from core.api import create_app
from core.bootstrap import Services
from core.db_outages import guarded
from core.errors import ConfigError, first_line

log = logging.getLogger(__name__)
API_STARTUP_SECONDS = 30
# How often the worker checks that it may run on: its API thread is alive, and its database's schema is
# still the one this code was written for.
API_WATCH_SECONDS = 5
# How long a stop waits for the API's requests in flight. uvicorn waits for ever by default, so one client
# trickling its body held the API past the join below (the intake writer never stopped, the database closed
# under a running API). Past it uvicorn cancels them (logging each as "Exception in ASGI application") and
# still runs the lifespan shutdown (the intake writer's stop, at most intake.STOP_SECONDS), within the join below;
# the join, the jobs' last pass and the leases' release stay within systemd's TimeoutStopSec (deploy/).
API_GRACE_SECONDS = 10
API_JOIN_SECONDS = API_GRACE_SECONDS + intake.STOP_SECONDS + 1


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
        # Wall-clock time, not the run's clock: a `--now` run in the future would otherwise leave a
        # beat that keeps the worker "running" on the dashboard for days after it exits.
        with db.write_transaction(self.services.engine) as conn:
            heartbeat.beat(conn, self.worker_id, datetime.now(UTC))

    def schedule(self) -> list[tuple]:
        return [(self.heartbeat, HEARTBEAT_SECONDS), *self._extra]

    def run_once(self) -> int:
        """Run every job once; 1 when one failed. A failure does not skip the jobs after it: under cron a
        broken action would otherwise keep dispatch, erasure holds and the mirror from ever running."""
        code = 0
        try:
            for job, _ in self.schedule():
                try:
                    job()
                except Exception as exc:
                    if db.storage_unavailable(exc):
                        raise  # every job needs the database: said once, by scheduler.py, in one line
                    log.exception("%s failed", job.__name__, extra={"action": job.__name__})
                    code = 1
        finally:
            self.release_leases()  # cron's next --once, a minute later, must run the singleton jobs too
        return code

    def release_leases(self) -> None:
        """Hand back this worker's single-worker jobs (Notion, alerts) so another worker takes them at
        once instead of after the lease expires; with the database gone they simply expire."""
        try:
            with db.write_transaction(self.services.engine) as conn:
                singleton.release_all(conn, self.worker_id)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("worker %s could not release its job leases; they expire within a minute: %s",
                        self.worker_id, first_line(exc), extra={"action": "shutdown"})


class ApiThread:
    """Uvicorn in a background thread; the main thread keeps the scheduler and the signals."""

    def __init__(self, services: Services, host: str, port: int):
        self.host, self.port = host, port
        # httptools, uvicorn's parser when installed, keeps a request line and headers of any size, so one
        # client could grow the worker until the OOM killer took it; h11 refuses a head over 16 KiB
        # (h11_max_incomplete_event_size). Only this machine can reach a loopback API: nginx bounds heads there.
        http = "auto" if is_loopback(host) else "h11"
        # log_config=None: uvicorn's own lines go through the worker's logging, JSON included.
        config = uvicorn.Config(create_app(services), host=host, port=port, log_level="warning", lifespan="on",
                                log_config=None, timeout_graceful_shutdown=API_GRACE_SECONDS, http=http)
        self.server = uvicorn.Server(config)
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        """Listen here, so a taken port stops start-up in one sentence, then serve until the app is up.

        In its own thread uvicorn's failure to bind or start would end only that thread, and the
        worker would run on without an API and without failing for its supervisor to restart it.
        """
        listener = listen(self.host, self.port, server="The intake API", settings_named="API_HOST, API_PORT")
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [listener]}, name="api",
                                       daemon=True)
        self.thread.start()
        deadline = time.monotonic() + API_STARTUP_SECONDS
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ConfigError(f"The intake API on {self.host}:{self.port} did not start: the log above says why.")
            time.sleep(0.02)

    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def stop(self) -> None:
        if self.thread is not None:
            self.server.should_exit = True
            self.thread.join(timeout=API_JOIN_SECONDS)


def _schema_revision(jobs: WorkerJobs) -> str | None:
    """The database's migration revision; None while it cannot be read (an outage the jobs report)."""
    try:
        return db.current_revision(jobs.services.engine)
    except sa.exc.SQLAlchemyError:
        return None


def _stop_jobs(jobs: WorkerJobs) -> None:
    # Running jobs see the flag between batches; the wake lets a dispatcher waiting for signups return now.
    jobs.services.stopping.set()
    jobs.services.wake.set()


def run_forever(jobs: WorkerJobs, api: ApiThread | None) -> int:
    """Run every job on its interval until SIGTERM or Ctrl-C, then stop cleanly; returns the exit code."""
    executor = ThreadPoolExecutor()
    scheduler = BlockingScheduler(timezone=UTC, executors={"default": executor})
    scheduler.add_listener(OverrunWatch(), OverrunWatch.MASK)  # the overruns core.logs keeps quiet about
    for job, seconds in jobs.schedule():
        # Guarded only here: a --once run counts a core job's failure in its exit code, so cron sees 1.
        # name= too: APScheduler's own lines name a job by its function's __qualname__, "guarded.<locals>.run".
        scheduler.add_job(guarded(job, failures=jobs.services.write_failures), "interval", seconds=seconds,
                          coalesce=True, max_instances=1, next_run_time=datetime.now(UTC), id=job.__name__,
                          name=job.__name__, misfire_grace_time=None)
    outcome = {"code": 0, "stopping": False}

    def shut_down(signum) -> None:
        log.info("stopping on signal %s", signum, extra={"action": "shutdown"})
        _stop_jobs(jobs)
        if scheduler.running:
            scheduler.shutdown(wait=False)

    def stop(signum, _frame):
        # Ctrl-C in a terminal reaches the worker, and then the runner's SIGTERM does too: stop once.
        if outcome["stopping"]:
            return
        outcome["stopping"] = True
        if not scheduler.running:
            shut_down(signum)
            raise KeyboardInterrupt  # still starting up: unwind it
        # Not in the handler itself: it runs in the main thread between two of its steps, perhaps while
        # that thread holds a lock the shutdown takes (the executor's, while it submits a job), and
        # would then wait for itself for ever.
        threading.Thread(target=shut_down, args=(signum,), name="shutdown").start()

    def restart(reason: str, *args) -> None:
        """Stop with exit code 1, for the supervisor to start the worker again."""
        log.error(reason + "; stopping the worker so that its supervisor restarts it", *args,
                  extra={"action": "shutdown"})
        outcome.update(code=1, stopping=True)
        _stop_jobs(jobs)
        scheduler.shutdown(wait=False)

    revision_at_start = _schema_revision(jobs)

    def watch() -> None:
        if outcome["stopping"]:
            return
        if api and not api.alive():
            restart("the intake API stopped unexpectedly")
        # A newer release migrated the database while this one ran (`db upgrade`, or its worker started on another
        # machine): this code would go on writing to tables it no longer knows. Restarted, the worker runs the
        # release now installed, or refuses in one sentence if that is still this one.
        elif revision_at_start and (revision := _schema_revision(jobs)) not in (None, revision_at_start):
            restart("the database was migrated to revision %s while this worker ran on revision %s", revision,
                    revision_at_start)

    # misfire_grace_time=None: run late after a stall (a suspended VM), not skipped with a WARNING.
    scheduler.add_job(watch, "interval", seconds=API_WATCH_SECONDS, id="watch", name="watch", misfire_grace_time=None)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    started = False
    try:
        if api:
            api.start()
        log.info("worker %s started", jobs.worker_id, extra={"action": "start"})
        started = True
        scheduler.start()
    except KeyboardInterrupt:
        pass
    finally:
        if api:
            api.stop()
        # Jobs still running finish first: a lease handed back mid-pass would let a second worker start alongside.
        executor.shutdown(wait=True)
        jobs.release_leases()
        jobs.services.close()
        if started:  # a worker that never started (its port taken) says only why, in one sentence
            log.info("worker %s stopped", jobs.worker_id, extra={"action": "stop"})
    return outcome["code"]
