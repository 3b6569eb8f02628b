"""The real worker (`scheduler.py`) as a subprocess against the Resend stand-in, also a subprocess.

Time travel with `--now`, workers SIGKILLed at random moments, and two workers sharing one
database: whatever happens, every (contact, step) reaches the provider exactly once, in order.
"""

import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from core.bootstrap import build_services
from core.intake import enroll_now
from core.models import Send, Worker
from core.settings import Settings
from tests.support import START, FrozenClock, signup_request

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
STANDIN = ROOT / "tests" / "standins" / "resend_api.py"
API_KEY = "re_e2e_standin_key"
SECRET_KEY = "e2e-secret-key-not-for-production-0123456789"
PRODUCTION_DAYS = [0, 1, 3, 5, 7, 9, 11]
send_t, worker_t = Send.__table__, Worker.__table__


# ---------------------------------------------------------------- the stand-in and the worker as processes

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


# ---------------------------------------------------------------- time travel

def test_time_travel_over_eleven_days_delivers_the_seven_emails_each_once_on_their_day(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/nurture.db"
    enroll_many(settings_for(url, tmp_path, monkeypatch), ["traveller@example.com"])

    with standin_process(rate_limit=5) as standin:
        env = worker_env(url, tmp_path, standin)
        received_after = {}
        for day in [0, 1, 2, 3, 5, 7, 9, 11]:
            run_once(env, tmp_path, START + timedelta(days=day))
            received_after[day] = steps_by_recipient(standin.sent())["traveller@example.com"]
        sent = standin.sent()

    assert received_after == {0: [1], 1: [1, 2], 2: [1, 2], 3: [1, 2, 3], 5: [1, 2, 3, 4], 7: [1, 2, 3, 4, 5],
                              9: [1, 2, 3, 4, 5, 6], 11: [1, 2, 3, 4, 5, 6, 7]}
    assert len(sent) == 7 and len({e["subject"] for e in sent}) == 7
    assert len({e["idempotency_key"] for e in sent}) == 7
    for email in sent:
        assert email["to"] == ["traveller@example.com"] and email["sender"] == "Nurture <hello@example.com>"
        assert {t["name"]: t["value"] for t in email["tags"]}["campaign"] == "Christmas_2025"
        assert email["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert email["headers"]["List-Unsubscribe"].strip("<>") in email["text"]
    assert send_statuses(url) == Counter({"sent": 7})


# ---------------------------------------------------------------- crashes

def wait_until_serving(database_url: str, proc: subprocess.Popen, timeout: float = 20) -> None:
    """Block until the worker has written its first heartbeat, i.e. its jobs are running."""
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            with engine.connect() as conn:
                if conn.scalar(sa.select(worker_t.c.id).where(worker_t.c.pid == proc.pid)):
                    return
            time.sleep(0.05)
    finally:
        engine.dispose()


def test_workers_killed_at_random_moments_never_send_an_email_twice_or_lose_one(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/nurture.db"
    emails = [f"crash{i:02d}@example.com" for i in range(60)]
    enroll_many(settings_for(url, tmp_path, monkeypatch), emails, test_timing=True)
    rng = random.Random(20251201)
    started = time.monotonic()

    with standin_process(rate_limit=2, latency_ms=600) as standin:
        env = worker_env(url, tmp_path, standin)
        # Each restart starts its clock an hour on: earlier leases have expired and released steps are due.
        for round_ in range(1, 13):
            proc = start_worker(env, tmp_path, "--no-api", "--now", (START + timedelta(hours=round_)).isoformat())
            wait_until_serving(url, proc)
            time.sleep(rng.uniform(0.2, 1.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        killed_with = send_statuses(url)
        for hour in range(13, 30):
            if send_statuses(url) == Counter({"sent": 7 * len(emails)}):
                break
            run_once(env, tmp_path, START + timedelta(hours=hour))
        sent, stats = standin.sent(), standin.stats()

    received = steps_by_recipient(sent)
    assert sorted(received) == emails
    duplicates = {to: steps for to, steps in received.items() if Counter(steps).most_common(1)[0][1] > 1}
    assert duplicates == {}, "an email reached the provider twice"
    assert all(steps == [1, 2, 3, 4, 5, 6, 7] for steps in received.values()), "steps out of order"
    assert send_statuses(url) == Counter({"sent": 7 * len(emails)})
    assert replayed_batches(url) >= 1, "at least one kill landed mid-batch and its batch was replayed"
    print(f"\ncrash test: {stats} after kills at {dict(killed_with)}; {time.monotonic() - started:.0f} s")


def replayed_batches(database_url: str) -> int:
    """Batches taken over after their worker died (or backed off): claimed more than once."""
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return conn.scalar(sa.text("SELECT COUNT(*) FROM send_batch WHERE attempts > 1"))
    finally:
        engine.dispose()


# ---------------------------------------------------------------- two workers, one database

def test_two_workers_draining_one_backlog_together_deliver_each_email_exactly_once(
        database_url, tmp_path, monkeypatch):
    emails = [f"backlog{i:03d}@example.com" for i in range(300)]
    enroll_many(settings_for(database_url, tmp_path, monkeypatch), emails)

    with standin_process(rate_limit=5, latency_ms=300) as standin:
        env = worker_env(database_url, tmp_path, standin)
        now = (START + timedelta(minutes=1)).isoformat()
        workers = [start_worker(env, tmp_path, "--once", "--now", now) for _ in range(2)]
        assert [w.wait(timeout=90) for w in workers] == [0, 0], (tmp_path / "worker.log").read_text()[-3000:]
        sent = standin.sent()

    received = steps_by_recipient(sent)
    assert sorted(received) == emails, "an email was lost"
    assert all(steps == [1] for steps in received.values()), "an email was delivered twice"
    assert len(sent) == 300
    statuses = send_statuses(database_url)
    assert statuses["sent"] == 300 and statuses["sending"] == 0
    print(f"\ntwo workers: emails sent per worker {sorted(senders(database_url).values())}")


def senders(database_url: str) -> Counter:
    """How many sends each worker recorded, from the audit trail."""
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return Counter(dict(conn.execute(sa.text(
                "SELECT actor, COUNT(*) FROM event WHERE kind = 'send_sent' GROUP BY actor")).all()))
    finally:
        engine.dispose()
