"""The real worker (`scheduler.py`) as a subprocess against the Resend stand-in, also a subprocess.

Time travel with `--now`, workers SIGKILLed at random moments, and two workers sharing one
database: whatever happens, every (contact, step) reaches the provider exactly once, in order.
"""

import random
import signal
import time
from collections import Counter
from datetime import timedelta

import pytest

from tests.e2e.processes import (
    enroll_many, replayed_batches, run_once, send_statuses, senders, settings_for, standin_process,
    start_worker, steps_by_recipient, wait_until_serving, worker_env,
)
from tests.support import START

# Each test here starts a worker process a dozen times or more, one after another, so its run time grows
# with the machine's slowness: the crash test took 275 s of the suite's 300 s hang guard under two CPU
# burners. The guard stays, scaled to the work.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

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
            wait_until_serving(url, proc, tmp_path / "worker.log")
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


