"""The intake API served by `uvicorn --workers 3`: concurrent signups across processes, on SQLite and PostgreSQL.

Three worker processes each run their own group-commit writer on one database. A burst of
signups over many connections (the kernel hands them to whichever worker accepts) must all be
answered 202; concurrent posts of one address enroll it exactly once (one answer says
duplicate false, every other one duplicate true); and after a graceful SIGTERM the database
holds one contact, one enrollment and seven sends per address, and a signup row for every post.
"""

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from core.models import Contact, Enrollment, Event, Send, Signup
from core.settings import Settings
from tests.e2e.processes import START_UP_SECONDS, alive, free_port, healthy, wait_for

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
WORKERS = 3
SECRET = "e2e-webhook-secret"
SECRET_KEY = "e2e-secret-key-not-for-production-0123456789"
DISTINCT = 150  # addresses posted once each
SAME = "same.address@example.com"  # ...and one address posted SAME_POSTS times at once
SAME_POSTS = 20
RESUBMITTED = 10  # distinct addresses posted a second time, concurrently with their first post
UNAUTHORISED = 5  # posts without the secret: refused by whichever worker takes them
SERVED_BYTES = 1500  # what a worker writes answering a handful of posts
contact_t, enrollment_t, send_t = Contact.__table__, Enrollment.__table__, Send.__table__
signup_t, event_t = Signup.__table__, Event.__table__


def api_env(database_url: str, data_dir: Path) -> dict[str, str]:
    """Nothing inherited that Settings reads; no RESEND key, so the mailer is a dry run."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    # The processes run in the test's folder (so no developer .env is read) and import core from the repo.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(DATABASE_URL=database_url, DATA_DIR=str(data_dir), SECRET_KEY=SECRET_KEY, WEBHOOK_SECRET=SECRET,
               INTAKE_RATE_LIMIT="0", LOG_LEVEL="WARNING")
    return env


def run_core(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60)


def signup(email: str, red: int) -> dict:
    return {"email": email, "first_name": "Pat", "business_name": "Parallel Ltd", "red_systems": red,
            "orange_systems": 0, "yellow_systems": 1, "green_systems": 1, "assessment_score": 40 + red}


TOKEN_IN_A_LINK = "01a2b3c4d5e6f708091a2b3c4d5e6f70.not-a-real-signature"


def segment_of(red: int) -> str:
    return {0: "OPTIMIZE", 1: "URGENT", 2: "CRITICAL"}[red]


# ---------------------------------------------------------------- the processes, read from /proc

def worker_pids(parent: int) -> list[int]:
    """uvicorn's worker processes: the parent's children started by multiprocessing's spawn_main
    (its other child, multiprocessing's resource tracker, serves nothing)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])  # the name in parentheses may hold spaces
        if ppid == parent and "spawn_main" in cmdline:
            pids.append(int(entry.name))
    return sorted(pids)


def written_bytes(pid: int) -> int:
    """Bytes the process has written (sockets and files): grows when it answers a request."""
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# ---------------------------------------------------------------- the burst

async def post_all(base: str, posts: list[tuple[dict, dict]]) -> list[httpx.Response]:
    """Every post at once, each over its own connection, so the kernel spreads them over the workers."""
    limits = httpx.Limits(max_connections=len(posts), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        return await asyncio.gather(*(client.post("/webhook/christmas-signup", json=body, headers=headers)
                                      for body, headers in posts))


def test_three_uvicorn_workers_enroll_concurrent_signups_exactly_once(database_url, tmp_path):
    # A new, empty database: the three workers migrate it themselves, together, as after a first deploy.
    env = {**api_env(database_url, tmp_path), "LOG_FORMAT": "json"}

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "uvicorn.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "core.api:app", "--workers", str(WORKERS),
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "info"],  # as the README has it
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    workers: list[int] = []
    try:
        wait_for(lambda: healthy(base) or proc.poll() is not None, START_UP_SECONDS, "/health to answer 200", log)
        assert proc.poll() is None, f"uvicorn exited early:\n{log.read_text()[-3000:]}"
        workers = wait_for(lambda: len(pids := worker_pids(proc.pid)) >= WORKERS and pids, START_UP_SECONDS,
                           f"{WORKERS} worker processes", log)
        assert len(workers) == WORKERS, f"expected {WORKERS} uvicorn workers, found {workers}"
        # Each worker builds the app on its own: wait until every one has run its lifespan startup.
        wait_for(lambda: log.read_text().count("Application startup complete.") >= WORKERS, START_UP_SECONDS,
                 "every worker's startup", log)
        written_before = {pid: written_bytes(pid) for pid in workers}

        rng = random.Random(20251201)
        distinct = [(f"parallel{i:03d}@example.com", i % 3) for i in range(DISTINCT)]
        resubmitted = rng.sample(distinct, RESUBMITTED)
        good = {"X-Webhook-Secret": SECRET}
        posts = ([(signup(email, red), good) for email, red in distinct + resubmitted]
                 + [(signup(SAME, 2), good)] * SAME_POSTS
                 + [(signup(f"intruder{i}@example.com", 0), {}) for i in range(UNAUTHORISED)])
        rng.shuffle(posts)
        started = time.monotonic()
        answers = asyncio.run(post_all(base, posts))
        burst_seconds = time.monotonic() - started
        unsubscribe = httpx.get(f"{base}/unsubscribe/{TOKEN_IN_A_LINK}", timeout=10)

        served = {pid: written_bytes(pid) - before for pid, before in written_before.items()}
        assert all(alive(pid) for pid in workers), "a uvicorn worker died during the burst"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # graceful: each worker's lifespan stops its writer
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            code = None
        for pid in workers:  # orphans a failed shutdown left behind
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    output = log.read_text()
    assert code == 0, f"uvicorn did not stop cleanly on SIGTERM (exit {code}):\n{output[-3000:]}"
    assert not [pid for pid in workers if alive(pid)], "a worker outlived its supervisor"
    assert "Traceback" not in output and "ERROR" not in output, output[-3000:]
    # The workers log through Nurture's own set-up: LOG_FORMAT=json reaches uvicorn's lines too,
    # and no access line records an unsubscribe link's token.
    startup_lines = [line for line in output.splitlines() if "Application startup complete." in line]
    assert len(startup_lines) >= WORKERS and all(json.loads(line)["logger"] == "uvicorn.error"
                                                 for line in startup_lines), startup_lines
    assert unsubscribe.status_code == 400 and TOKEN_IN_A_LINK not in output

    # Every worker took part: with one connection per post, each answered several posts of the burst
    # (one answer is some 300 bytes; an idle worker writes only the supervisor's few-byte health pongs).
    assert all(n >= SERVED_BYTES for n in served.values()), f"bytes written per worker during the burst: {served}"

    # The answers: 202 for every authorised post (never a 5xx), 401 for the rest.
    by_email: dict[str, list[dict]] = {}
    for (body, headers), answer in zip(posts, answers, strict=True):
        if not headers:
            assert answer.status_code == 401, answer.text
            continue
        assert answer.status_code == 202, f"{answer.status_code} for {body['email']}: {answer.text}"
        data = answer.json()
        assert set(data) == {"status", "message", "email", "campaign", "segment", "duplicate"}
        assert data["status"] == "accepted" and data["email"] == body["email"]
        assert data["segment"] == segment_of(body["red_systems"])
        by_email.setdefault(body["email"], []).append(data)
    first_posts = {email: [a["duplicate"] for a in got].count(False) for email, got in by_email.items()}
    assert first_posts == {email: 1 for email in by_email}, "an address was enrolled more or less than once"
    assert Counter(a["duplicate"] for a in by_email[SAME]) == Counter({False: 1, True: SAME_POSTS - 1})
    for email, _ in resubmitted:
        assert sorted(a["duplicate"] for a in by_email[email]) == [False, True]
    expected_emails = {email for email, _ in distinct} | {SAME}
    assert set(by_email) == expected_emails

    # The database: one contact and one enrollment per address, seven sends each, a signup row per post.
    total_posts = DISTINCT + RESUBMITTED + SAME_POSTS
    enrollments = len(expected_emails)
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            emails = conn.scalars(sa.select(contact_t.c.email)).all()
            per_contact = conn.execute(
                sa.select(contact_t.c.email, sa.func.count(enrollment_t.c.id))
                .select_from(contact_t.outerjoin(enrollment_t, enrollment_t.c.contact_id == contact_t.c.id))
                .group_by(contact_t.c.email)).all()
            per_enrollment = conn.execute(
                sa.select(send_t.c.enrollment_id, sa.func.count(), sa.func.count(sa.distinct(send_t.c.step)),
                          sa.func.min(send_t.c.step), sa.func.max(send_t.c.step))
                .group_by(send_t.c.enrollment_id)).all()
            enrollment_count = conn.scalar(sa.select(sa.func.count()).select_from(enrollment_t))
            send_statuses = Counter(dict(conn.execute(
                sa.select(send_t.c.status, sa.func.count()).group_by(send_t.c.status)).all()))
            orphan_sends = conn.scalar(sa.select(sa.func.count()).select_from(
                send_t.outerjoin(enrollment_t, enrollment_t.c.id == send_t.c.enrollment_id))
                .where(enrollment_t.c.id.is_(None)))
            outcomes = Counter(dict(conn.execute(
                sa.select(signup_t.c.outcome, sa.func.count()).group_by(signup_t.c.outcome)).all()))
            same_signups = conn.scalar(sa.select(sa.func.count()).select_from(
                signup_t.join(contact_t, contact_t.c.id == signup_t.c.contact_id)).where(contact_t.c.email == SAME))
            signup_events = Counter(dict(conn.execute(
                sa.select(event_t.c.kind, sa.func.count()).where(event_t.c.kind.like("signup_%"))
                .group_by(event_t.c.kind)).all()))
    finally:
        engine.dispose()

    assert len(emails) == len(set(emails)) and set(emails) == expected_emails, "contacts lost or doubled"
    assert dict(per_contact) == {email: 1 for email in expected_emails}, "not one enrollment per contact"
    assert enrollment_count == enrollments
    assert len(per_enrollment) == enrollments
    assert all((n, steps, lo, hi) == (7, 7, 1, 7) for _, n, steps, lo, hi in per_enrollment), \
        "an enrollment without exactly its seven steps"
    assert orphan_sends == 0
    # No dispatcher runs in the API processes: every send is still waiting.
    assert send_statuses == Counter({"scheduled": 7 * enrollments})
    assert sum(outcomes.values()) == total_posts, f"signup rows lost: {outcomes}"
    assert outcomes["enrolled"] == enrollments
    assert outcomes["updated"] + outcomes["skipped"] == total_posts - enrollments, outcomes
    assert same_signups == SAME_POSTS
    assert sum(signup_events.values()) == total_posts and signup_events["signup_enrolled"] == enrollments

    stats = run_core(env, tmp_path, "stats", "--json")
    assert stats.returncode == 0, stats.stderr
    data = json.loads(stats.stdout)
    assert data["contacts"] == enrollments and data["enrollments"] == enrollments
    assert data["segments"] == {"CRITICAL": DISTINCT // 3 + 1, "URGENT": DISTINCT // 3, "OPTIMIZE": DISTINCT // 3}
    assert data["sends"]["scheduled"] == 7 * enrollments and sum(data["sends"].values()) == 7 * enrollments
    assert data["unsubscribed"] == 0 and data["suppressed"] == 0
    print(f"burst of {len(posts)} posts in {burst_seconds:.2f} s; bytes written per worker: {served}; "
          f"signup outcomes: {dict(outcomes)}")
