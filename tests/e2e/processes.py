"""The real worker and the Resend stand-in as subprocesses, and what end-to-end tests read back."""

import os
import re
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from pathlib import Path

import httpx
import requests
import sqlalchemy as sa

from core.bootstrap import build_services
from core.intake import enroll_now
from core.models import Send, Worker
from core.runner import STARTUP_SECONDS
from core.settings import Settings
from tests.support import START, FrozenClock, signup_request

ROOT = Path(__file__).resolve().parents[2]
STANDIN = ROOT / "tests" / "standins" / "resend_api.py"
API_KEY = "re_e2e_standin_key"
SECRET_KEY = "e2e-secret-key-not-for-production-0123456789"
send_t, worker_t = Send.__table__, Worker.__table__
# How long a test waits for a server it started to answer: as long as `make run` waits for its own
# children. A machine slow enough to need that still runs Nurture, so it must not fail the tests.
START_UP_SECONDS = STARTUP_SECONDS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def answers(url: str) -> bool:
    """True once GET url answers 200."""
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def healthy(base: str) -> bool:
    """True once GET {base}/health answers 200."""
    return answers(f"{base}/health")


def wait_for(predicate, seconds: float, what: str, log: Path, interval: float = 0.1):
    """Poll `predicate` until it returns something truthy (returned); fail with the process log's tail."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}; process log:\n{log.read_text()[-3000:]}")


class StandIn:
    """The Resend stand-in running as a script; read what it accepted over its control endpoints."""

    def __init__(self, url: str):
        self.url = url

    def sent(self) -> list[dict]:
        return requests.get(f"{self.url}/_sent", timeout=10).json()

    def stats(self) -> dict:
        return requests.get(f"{self.url}/_stats", timeout=10).json()


@contextmanager
def standin_process(*, rate_limit: float = 5, latency_ms: float = 0):
    proc = subprocess.Popen(
        [sys.executable, str(STANDIN), "--port", "0", "--api-key", API_KEY, "--rate-limit", str(rate_limit),
         "--latency-ms", str(latency_ms)], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        match = re.search(r"listening on (http://\S+)", line)
        assert match, f"the stand-in did not start: {line!r}"
        yield StandIn(match.group(1))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()


def worker_env(database_url: str, data_dir: Path, standin: StandIn, **extra: str) -> dict[str, str]:
    """The worker's environment: nothing inherited that Settings reads, everything it needs set."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    env.update(DATABASE_URL=database_url, DATA_DIR=str(data_dir), SECRET_KEY=SECRET_KEY,
               RESEND_API_KEY=API_KEY, RESEND_FROM_EMAIL="Nurture <hello@example.com>",
               RESEND_API_URL=standin.url, RESEND_RATE_LIMIT="5", LOG_LEVEL="WARNING", **extra)
    return env


def start_worker(env: dict, cwd: Path, *args: str) -> subprocess.Popen:
    log = open(cwd / "worker.log", "a")
    try:  # cwd is the test's folder, so no developer .env file is read
        return subprocess.Popen([sys.executable, str(ROOT / "scheduler.py"), *args], env=env, cwd=cwd,
                                stdout=log, stderr=log)
    finally:
        log.close()


def run_once(env: dict, cwd: Path, now) -> None:
    proc = start_worker(env, cwd, "--once", "--now", now.isoformat())
    assert proc.wait(timeout=60) == 0, (cwd / "worker.log").read_text()[-3000:]


# ---------------------------------------------------------------- the database, prepared in-process

def settings_for(database_url: str, data_dir: Path, monkeypatch, **values) -> Settings:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    return Settings(_env_file=None, database_url=database_url, data_dir=str(data_dir), secret_key=SECRET_KEY,
                    **values)


def enroll_many(settings: Settings, emails: list[str], *, test_timing: bool = False) -> None:
    """Migrate the database and enroll every address at START, in batches, as intake would."""
    services = build_services(settings, clock=FrozenClock(START), migrate=True)
    try:
        for i in range(0, len(emails), 200):
            enroll_now(services, [signup_request(email=e, force_test_timing=test_timing)
                                  for e in emails[i:i + 200]])
    finally:
        services.close()


def send_statuses(database_url: str) -> Counter:
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return Counter(dict(conn.execute(sa.select(send_t.c.status, sa.func.count()).group_by(send_t.c.status))
                                .all()))
    finally:
        engine.dispose()


def steps_by_recipient(sent: list[dict]) -> dict[str, list[int]]:
    """Each recipient's steps in the order the stand-in accepted them."""
    steps: dict[str, list[int]] = defaultdict(list)
    for email in sent:
        tags = {t["name"]: t.get("value") for t in email["tags"]}
        for to in email["to"]:
            steps[to].append(int(tags["step"]))
    return steps


def wait_until_serving(database_url: str, proc: subprocess.Popen, log: Path,
                       timeout: float = START_UP_SECONDS) -> None:
    """Block until the worker has written its first heartbeat, i.e. its jobs are running.

    Fails, with the worker's log, if it exits first or never beats: returning anyway let a caller go on
    to kill a worker that had not started, and test nothing.
    """
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        wait_for(lambda: _has_beaten(engine, proc, log), timeout, f"worker {proc.pid}'s first heartbeat", log,
                 interval=0.05)
    finally:
        engine.dispose()


def _has_beaten(engine: sa.Engine, proc: subprocess.Popen, log: Path) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"worker {proc.pid} exited with {proc.returncode} before its first heartbeat; "
                             f"its log:\n{log.read_text()[-3000:]}")
    with engine.connect() as conn:
        return conn.scalar(sa.select(worker_t.c.id).where(worker_t.c.pid == proc.pid)) is not None


def replayed_batches(database_url: str) -> int:
    """Batches taken over after their worker died (or backed off): claimed more than once."""
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return conn.scalar(sa.text("SELECT COUNT(*) FROM send_batch WHERE attempts > 1"))
    finally:
        engine.dispose()



def senders(database_url: str) -> Counter:
    """How many sends each worker recorded, from the audit trail."""
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return Counter(dict(conn.execute(sa.text(
                "SELECT actor, COUNT(*) FROM event WHERE kind = 'send_sent' GROUP BY actor")).all()))
    finally:
        engine.dispose()
