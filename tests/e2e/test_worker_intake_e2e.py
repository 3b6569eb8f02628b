"""The real worker (`scheduler.py`) as a subprocess: it serves intake, beats, and stops cleanly on SIGTERM."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from core.settings import Settings
from tests.e2e.processes import START_UP_SECONDS, free_port, wait_for
from tests.support import SEED_SIGNUPS

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def worker_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A clean environment (no Nurture variable, so no RESEND key: dry run) on a fresh SQLite file."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    env.update({"DATABASE_URL": f"sqlite:///{tmp_path}/nurture.db", "DATA_DIR": str(tmp_path), **extra})
    return env


def run(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def health(base: str) -> dict | None:
    try:
        response = httpx.get(f"{base}/health", timeout=2)
    except httpx.TransportError:
        return None
    return response.json() if response.status_code == 200 else None


@pytest.fixture
def worker(tmp_path):
    """A running `python scheduler.py` with its API on a free port; stopped (or killed) afterwards."""
    port = free_port()
    env = worker_env(tmp_path, API_PORT=str(port))
    log = tmp_path / "worker.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "scheduler.py"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        yield proc, base, env, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_the_worker_serves_intake_beats_and_stops_cleanly_on_sigterm(worker):
    proc, base, env, log = worker
    wait_for(lambda: health(base) or proc.poll() is not None, START_UP_SECONDS, "/health to answer", log)
    assert proc.poll() is None, f"the worker exited early:\n{log.read_text()[-3000:]}"

    with httpx.Client(base_url=base, timeout=10) as client:
        answers = [client.post("/webhook/christmas-signup", json=body) for body, _ in SEED_SIGNUPS]
    assert [a.status_code for a in answers] == [202, 202, 202]
    assert [a.json()["segment"] for a in answers] == [segment for _, segment in SEED_SIGNUPS]

    status = wait_for(lambda: (h := health(base)) and h["worker_last_seen"] and h, 15, "a heartbeat", log)
    assert status["status"] == "healthy" and status["database"] == "ok"
    assert status["resend_configured"] is False
    # The co-hosted dispatcher is woken by intake: each step 1 goes out (dry run) without waiting for a tick.
    wait_for(lambda: (h := health(base)) and h["queue"]["sent"] == 3, 15, "the three welcome emails", log)

    stats = run(["-m", "core", "stats", "--json"], env)
    assert stats.returncode == 0, stats.stderr
    data = json.loads(stats.stdout)
    assert data["contacts"] == 3 and data["enrollments"] == 3
    assert data["segments"] == {"CRITICAL": 1, "URGENT": 1, "OPTIMIZE": 1}
    assert data["sends"] == {"scheduled": 18, "sending": 0, "sent": 3, "failed": 0, "cancelled": 0, "skipped": 0}

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0, log.read_text()[-3000:]


def test_a_single_pass_exits_0(tmp_path):
    result = run(["scheduler.py", "--once"], worker_env(tmp_path))
    assert result.returncode == 0, result.stderr


def test_a_worker_starting_with_sending_paused_says_so_in_its_log(tmp_path):
    env = worker_env(tmp_path)
    assert run(["-m", "core", "db", "upgrade"], env).returncode == 0
    assert run(["-m", "core", "pause", "--reason", "restored from a backup"], env).returncode == 0
    result = run(["scheduler.py", "--once"], env)
    assert result.returncode == 0, result.stderr
    assert "sending is paused (restored from a backup)" in result.stderr
    assert "python -m core resume" in result.stderr


def test_a_single_pass_at_a_chosen_instant_exits_0(tmp_path):
    result = run(["scheduler.py", "--now", "2025-12-01T09:00:00Z", "--once"], worker_env(tmp_path))
    assert result.returncode == 0, result.stderr


def test_a_time_travel_run_beats_in_real_time_so_it_never_looks_alive_after_it_exits(tmp_path):
    ahead = datetime.now(UTC) + timedelta(days=3)
    result = run(["scheduler.py", "--now", ahead.isoformat(), "--once"], worker_env(tmp_path))
    assert result.returncode == 0, result.stderr

    with sqlite3.connect(tmp_path / "nurture.db") as db:
        [(last_seen,)] = db.execute("SELECT last_seen FROM worker").fetchall()
    assert abs(datetime.fromisoformat(last_seen).replace(tzinfo=UTC) - datetime.now(UTC)) < timedelta(minutes=5)


def test_a_malformed_now_exits_2_with_a_message(tmp_path):
    result = run(["scheduler.py", "--now", "garbage", "--once"], worker_env(tmp_path))
    assert result.returncode == 2
    assert "--now" in result.stderr and "garbage" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_taken_api_port_stops_the_worker_in_one_line(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run(["scheduler.py"], worker_env(tmp_path, API_PORT=str(port)), timeout=60)

    assert result.returncode == 2, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("nurture:")]
    assert f"127.0.0.1:{port}" in line and "API_PORT" in line and "already in use" in line
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("database_url", "code", "saying"), [
    # nothing listens on port 1: an outage, exit 1
    ("postgresql+psycopg://nurture:s3cret-pw@127.0.0.1:1/nurture", 1, "nurture: the worker cannot use the database: "),
    # a folder, not a file: a setting to correct, exit 2, naming it
    ("sqlite:///{tmp_path}", 2, "nurture: DATABASE_URL names the SQLite file {tmp_path}, which cannot be opened: "
                                "it is a folder."),
], ids=["unreachable", "not-a-file"])
def test_a_database_the_worker_cannot_use_stops_it_in_one_line(tmp_path, database_url, code, saying):
    env = worker_env(tmp_path, DATABASE_URL=database_url.format(tmp_path=tmp_path), PGCONNECT_TIMEOUT="5")
    result = run(["scheduler.py", "--once"], env, timeout=60)

    assert result.returncode == code, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(saying.format(tmp_path=tmp_path))
    assert "Traceback" not in result.stderr and "s3cret-pw" not in result.stderr


def test_ctrl_c_then_sigterm_stop_the_worker_once_and_cleanly(worker):
    proc, base, _, log = worker
    wait_for(lambda: health(base) or proc.poll() is not None, START_UP_SECONDS, "/health to answer", log)

    proc.send_signal(signal.SIGINT)  # a terminal's Ctrl-C, then the runner passing on its own stop
    proc.send_signal(signal.SIGTERM)

    assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()
