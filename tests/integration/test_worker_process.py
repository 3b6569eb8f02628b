"""The worker's main loop: a supervisor learns when the API it serves has died; a stopped worker hands back its leases."""

import logging
import os
import signal
import socket
import threading
import time

import pytest
import sqlalchemy as sa
from apscheduler.executors.pool import ThreadPoolExecutor

from core import singleton, worker
from core.errors import ConfigError
from core.worker import WorkerJobs, run_forever
from tests.support import rows


class DeadApi:
    """An API thread that started, then died (what a crash inside uvicorn leaves)."""

    def start(self) -> None:
        pass

    def alive(self) -> bool:
        return False

    def stop(self) -> None:
        pass


@pytest.fixture
def restored_signals():
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_worker_whose_api_died_exits_1_so_its_supervisor_restarts_it(services, monkeypatch, restored_signals):
    monkeypatch.setattr(worker, "API_WATCH_SECONDS", 0.2)

    assert run_forever(WorkerJobs(services, "worker-a"), DeadApi()) == 1


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_worker_whose_api_port_is_taken_says_only_why(services, restored_signals, caplog):
    # A "worker … stopped" line came before the sentence, for a worker that had never said it started.
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with caplog.at_level(logging.INFO, logger="core.worker"), pytest.raises(ConfigError) as caught:
            run_forever(WorkerJobs(services, "worker-a"), worker.ApiThread(services, "127.0.0.1", port))
    assert str(caught.value) == (f"The intake API cannot listen on 127.0.0.1:{port} (API_HOST, API_PORT): "
                                 "address already in use.")
    assert [r.getMessage() for r in caplog.records if r.name == "core.worker"] == []


def leases(services) -> list[dict]:
    return rows(services.engine, "SELECT name, owner FROM job_lease")


def take_the_alerts_lease_then_stop(jobs: WorkerJobs):
    def job() -> None:
        singleton.run_as_singleton(jobs.services, "alerts", jobs.worker_id, lambda: None)
        os.kill(os.getpid(), signal.SIGTERM)  # what systemd sends on `systemctl restart`

    return job


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_worker_stopped_by_a_signal_hands_back_its_job_leases(services, restored_signals):
    jobs = WorkerJobs(services, "worker-a")
    jobs.add(take_the_alerts_lease_then_stop(jobs), 60)

    assert run_forever(jobs, None) == 0

    assert leases(services) == []


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_worker_that_cannot_reach_the_database_at_shutdown_logs_one_line_and_exits_cleanly(
        services, restored_signals, monkeypatch, caplog):
    jobs = WorkerJobs(services, "worker-a")
    jobs.add(take_the_alerts_lease_then_stop(jobs), 60)

    def database_gone(*_args):
        raise sa.exc.OperationalError("DELETE FROM job_lease", {}, Exception("connection refused\nDETAIL: more"))

    monkeypatch.setattr(singleton, "release_all", database_gone)

    assert run_forever(jobs, None) == 0

    [line] = [r for r in caplog.records if "job leases" in r.getMessage()]
    assert line.levelname == "WARNING" and line.exc_info is None
    assert line.getMessage().endswith("they expire within a minute: connection refused")
    assert leases(services) == [{"name": "alerts", "owner": "worker-a"}]  # left to expire, as a killed worker's


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_once_run_hands_back_its_job_leases_even_when_a_job_fails(services):
    jobs = WorkerJobs(services, "once-a")

    def broken_dispatch() -> None:
        raise RuntimeError("dispatch broke")

    jobs.add(lambda: singleton.run_as_singleton(services, "notion_sync", jobs.worker_id, lambda: None), 2)
    jobs.add(broken_dispatch, 1)

    assert jobs.run_once() == 1

    assert leases(services) == []


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_once_run_runs_the_jobs_after_one_that_fails_and_exits_1(services, caplog):
    # The first failure ended the run: under cron, one action that always failed kept dispatch, the erasure
    # holds' release and the Notion mirror from ever running, though the scheduled worker runs each on its own.
    jobs = WorkerJobs(services, "once-a")
    ran = []

    def carry_out_actions() -> None:
        raise RuntimeError("an action broke")

    jobs.add(carry_out_actions, 1)
    jobs.add(lambda: ran.append("dispatch"), 1)

    assert jobs.run_once() == 1

    assert ran == ["dispatch"]
    [line] = [r for r in caplog.records if r.getMessage() == "carry_out_actions failed"]
    assert line.levelname == "ERROR" and "an action broke" in str(line.exc_info[1])


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_once_run_without_its_database_stops_at_once_for_scheduler_py_to_say_so_in_one_line(services):
    jobs = WorkerJobs(services, "once-a")
    ran = []

    def dispatch() -> None:
        raise sa.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))

    jobs.add(dispatch, 1)
    jobs.add(lambda: ran.append("purge"), 1)

    with pytest.raises(sa.exc.OperationalError, match="connection refused"):
        jobs.run_once()
    assert ran == []


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_database_outage_in_a_running_worker_logs_one_line_then_one_when_it_ends(services, restored_signals, caplog):
    caplog.set_level(logging.INFO, logger="core.db_outages")
    jobs, runs = WorkerJobs(services, "worker-a"), []

    def dispatch() -> None:
        runs.append(1)
        if len(runs) <= 5:
            raise sa.exc.OperationalError("SELECT", {}, Exception("server closed the connection unexpectedly"))
        os.kill(os.getpid(), signal.SIGTERM)

    jobs.add(dispatch, 0.05)

    assert run_forever(jobs, None) == 0

    failures = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in failures] == [
        "dispatch: the database is unavailable, retrying quietly until it answers: "
        "server closed the connection unexpectedly"]
    assert not failures[0].exc_info  # and APScheduler never saw the exception to log it again
    assert any(r.getMessage().startswith("dispatch: the database answers again") for r in caplog.records)


class SignalWhileSubmitting(ThreadPoolExecutor):
    """Delivers SIGTERM while the main thread holds the pool's lock, as a Ctrl-C arriving just as the
    scheduler hands a job to the pool does. A watchdog frees the lock if the handler waits on it."""

    def __init__(self):
        super().__init__()
        self.deadlocked = False
        self._fired = False

    def _do_submit_job(self, job, run_times):
        if not self._fired:
            self._fired = True
            lock = self._pool._shutdown_lock
            lock.acquire()
            watchdog = threading.Timer(5, self._free, args=(lock,))
            watchdog.start()
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the handler runs here, in this thread, with the lock held
            watchdog.cancel()
            if not self.deadlocked:
                lock.release()
        return super()._do_submit_job(job, run_times)

    def _free(self, lock) -> None:
        self.deadlocked = True
        lock.release()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_signal_arriving_while_a_job_is_submitted_stops_the_worker_instead_of_hanging_it(
        services, restored_signals, monkeypatch):
    executors = []
    monkeypatch.setattr(worker, "ThreadPoolExecutor", lambda: executors.append(SignalWhileSubmitting()) or executors[-1])
    jobs = WorkerJobs(services, "worker-a")

    assert run_forever(jobs, None) == 0

    assert not executors[0].deadlocked, "the signal handler waited for a lock its own thread held"


def migrate_to_a_newer_release_once_running(services, revision: str = "0099_a_newer_release"):
    """A job standing in for `db upgrade` from a newer release, run while this worker runs."""
    def job() -> None:
        with services.engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = :r"), {"r": revision})

    return job


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_worker_whose_database_a_newer_release_migrated_stops_for_its_supervisor_to_restart_it(
        services, monkeypatch, restored_signals, caplog):
    # It went on writing to tables a newer release had changed under it: every migration so far only added, but
    # a rename or a drop would have broken every pass, or worse, half of one.
    monkeypatch.setattr(worker, "API_WATCH_SECONDS", 0.2)
    jobs = WorkerJobs(services, "worker-old")
    jobs.add(migrate_to_a_newer_release_once_running(services), 3600)
    safety = threading.Timer(20, os.kill, (os.getpid(), signal.SIGTERM))  # a worker that never notices exits 0
    safety.start()
    try:
        assert run_forever(jobs, None) == 1
    finally:
        safety.cancel()

    [line] = [r for r in caplog.records if "migrated to revision" in r.getMessage()]
    assert line.levelname == "ERROR" and "0099_a_newer_release" in line.getMessage()
    assert "restarts it" in line.getMessage()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_worker_that_cannot_read_the_revision_for_a_moment_runs_on(services, monkeypatch, restored_signals):
    # A database outage is the jobs' to report and wait out, not a reason to restart.
    monkeypatch.setattr(worker, "API_WATCH_SECONDS", 0.05)
    reads = []

    def unreadable_now_and_then(_engine):
        reads.append(1)
        if len(reads) == 1:
            return "0010_at_start"
        if len(reads) == 8:
            os.kill(os.getpid(), signal.SIGTERM)  # enough watches seen: stop as systemd would
        if len(reads) % 2:
            raise sa.exc.OperationalError("SELECT version_num FROM alembic_version", {}, Exception("server closed"))
        return None  # no alembic_version to read just now

    monkeypatch.setattr(worker.db, "current_revision", unreadable_now_and_then)
    safety = threading.Timer(20, os.kill, (os.getpid(), signal.SIGTERM))
    safety.start()
    try:
        assert run_forever(WorkerJobs(services, "worker-a"), None) == 0
    finally:
        safety.cancel()
    assert len(reads) >= 8


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_job_that_does_not_return_is_reported_though_its_skipped_runs_are_not(
        services, monkeypatch, restored_signals, caplog):
    # The log filter drops APScheduler's line for each skipped run, for every job: a dispatch stuck on a call
    # that never returned left no trace at all, while the heartbeat kept the worker looking alive.
    from core import overruns
    monkeypatch.setattr(overruns, "LONG_RUN_SECONDS", 0.5, raising=False)
    from core import logs
    # The worker's own filter on APScheduler's log, as configure_logging sets it.
    monkeypatch.setattr(logging.getLogger("apscheduler.scheduler"), "filters", [logs._SkipExpectedOverruns()])
    caplog.set_level(logging.INFO)
    jobs = WorkerJobs(services, "worker-a")

    def stuck_dispatch() -> None:
        time.sleep(2)  # standing in for a call that never returns
        os.kill(os.getpid(), signal.SIGTERM)

    stuck_dispatch.__name__ = "dispatch"
    jobs.add(stuck_dispatch, 0.1)

    assert run_forever(jobs, None) == 0

    assert not [r for r in caplog.records if "maximum number of running instances" in r.getMessage()]
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and '"dispatch"' in r.getMessage()]
    assert warnings, "a job running 4 times its limit went unreported"
    assert len(warnings) <= 4, "said once per limit's span, not at every skipped tick (20 of them)"
    assert "has been running for" in warnings[0].getMessage() and "stuck" in warnings[0].getMessage()
    assert [r for r in caplog.records if r.getMessage().startswith('job "dispatch" returned after')]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_apschedulers_own_lines_name_each_job(services, restored_signals, caplog):
    # APScheduler names a job by its function's __qualname__: every job read "guarded.<locals>.run" in its lines
    # (an exception it caught, a missed or skipped run), whichever job it was.
    caplog.set_level(logging.INFO, logger="apscheduler")
    jobs = WorkerJobs(services, "worker-a")

    def stop_soon() -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    jobs.add(stop_soon, 60)

    assert run_forever(jobs, None) == 0

    started = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Running job")]
    assert any(m.startswith('Running job "stop_soon (trigger') for m in started), started
    assert not [m for m in started if "<locals>" in m]


class PausedOnce(worker.BlockingScheduler):
    """A scheduler whose thread stalls once for 4.5 s: a suspended VM, a long GC pause, a starved CPU."""

    stalled = False

    def _process_jobs(self):
        if not PausedOnce.stalled:
            PausedOnce.stalled = True
            time.sleep(4.5)  # past the watch's run at 3 s by more than a second, short of its next at 6 s
        return super()._process_jobs()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_worker_stalled_for_a_moment_runs_its_watch_late_instead_of_warning_it_missed_it(
        services, monkeypatch, restored_signals, caplog):
    # The watch had APScheduler's default misfire_grace_time of 1 s: after any stall longer than that it was
    # skipped with a WARNING "Run time of job ... was missed by", about a job the operator never heard of.
    monkeypatch.setattr(worker, "API_WATCH_SECONDS", 3)
    monkeypatch.setattr(worker, "BlockingScheduler", PausedOnce)
    PausedOnce.stalled = False
    watched = []

    def read_then_stop_after_the_watch(_jobs) -> str:
        watched.append(1)
        if len(watched) == 2:  # the watch ran: stop now, not at a fixed time a loaded machine can overshoot
            os.kill(os.getpid(), signal.SIGTERM)
        return "0010_at_start"

    monkeypatch.setattr(worker, "_schema_revision", read_then_stop_after_the_watch)
    safety = threading.Timer(60, os.kill, (os.getpid(), signal.SIGTERM))  # a watch that never runs fails below
    safety.start()
    try:
        assert run_forever(WorkerJobs(services, "worker-a"), None) == 0
    finally:
        safety.cancel()

    assert PausedOnce.stalled and len(watched) == 2, "read at start, then by the watch, late"
    assert not [r.getMessage() for r in caplog.records if "was missed by" in r.getMessage()]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_client_that_never_finishes_its_body_does_not_hold_the_api_past_its_stop(services, monkeypatch):
    # uvicorn waits for every request in flight before its lifespan shutdown, and by default for ever: one
    # client trickling a body kept the API thread past the worker's join, so the intake writer was never
    # stopped and the worker closed the database under a still-running API.
    monkeypatch.setattr(worker, "API_GRACE_SECONDS", 1, raising=False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    api = worker.ApiThread(services, "127.0.0.1", port)
    api.start()
    try:
        with socket.create_connection(("127.0.0.1", port)) as slow:
            slow.sendall(b"POST /webhook/christmas-signup HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            # Wait until the request is in the app, waiting for the rest of its body: stopping any earlier
            # would test a server with nothing in flight.
            deadline = time.monotonic() + 30
            while not api.server.server_state.tasks:
                assert time.monotonic() < deadline, "the request never reached the app"
                time.sleep(0.01)
            started = time.monotonic()
            api.stop()
            took = time.monotonic() - started
            assert not api.alive()
            assert not api.server.config.app.state.writer._started  # the lifespan shutdown ran
            assert 1 <= took < worker.API_JOIN_SECONDS, "waited out the grace for the request, then stopped"
    finally:
        api.server.should_exit = api.server.force_exit = True


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_api_other_machines_reach_refuses_an_oversized_request_head(services):
    # httptools, uvicorn's parser when installed, keeps a request line and headers of any size: one client
    # sending an endless header grew the worker by as much (200 MiB sent, 325 MiB more RSS) until the OOM
    # killer took it, sends and all, before any secret was checked. h11 refuses a head over 16 KiB.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    api = worker.ApiThread(services, "0.0.0.0", port)
    api.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            # Sent whole, then read: the server takes it all before it answers and closes, so no reset.
            client.sendall(b"POST /webhook/christmas-signup HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 32768)
            try:
                answer = client.recv(100)
            except TimeoutError:  # still waiting for the end of the head, however long it grows
                answer = b""
        assert answer.startswith(b"HTTP/1.1 400 ")
    finally:
        api.stop()
