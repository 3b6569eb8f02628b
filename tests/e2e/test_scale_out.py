"""Scale-out: several real workers dispatching one database at once, SIGKILLed at random moments.

Runs on SQLite and on PostgreSQL, with two and with three workers. Whatever is killed when,
every (contact, step) reaches the provider exactly once, in order, and nothing is lost.
"""

import random
import signal
import time
from collections import Counter
from datetime import timedelta

import pytest

from tests.e2e.processes import (
    enroll_many, run_once, send_statuses, settings_for, standin_process, start_worker, steps_by_recipient,
    wait_until_serving, worker_env,
)
from tests.support import START

pytestmark = pytest.mark.e2e
CONTACTS = 80


# Three workers only: two racing one backlog is test_crash_and_time_travel's, on both backends too,
# and the 2-worker run here added some 80 s to the suite on a slow machine without a case of its own.
@pytest.mark.parametrize("workers", [3])
def test_several_workers_killed_while_dispatching_together_send_every_email_exactly_once(
        workers, database_url, tmp_path, monkeypatch):
    emails = [f"scale{i:03d}@example.com" for i in range(CONTACTS)]
    enroll_many(settings_for(database_url, tmp_path, monkeypatch), emails, test_timing=True)
    rng = random.Random(workers * 7919)

    # A slow provider keeps batches in flight long enough for the kills to land mid-call.
    with standin_process(rate_limit=3, latency_ms=400) as standin:
        env = worker_env(database_url, tmp_path, standin)
        for round_ in range(1, 3):
            # Each round's clock starts an hour on: the killed round's leases have expired.
            now = (START + timedelta(hours=round_)).isoformat()
            procs = [start_worker(env, tmp_path, "--no-api", "--now", now) for _ in range(workers)]
            # Every worker's jobs running, however long start-up takes here; then some dispatching together.
            # A fixed wait for start-up killed them before they dispatched anything on a slow machine.
            for proc in procs:
                wait_until_serving(database_url, proc, tmp_path / "worker.log")
            time.sleep(rng.uniform(0.5, 1.5))
            for proc in rng.sample(procs, k=len(procs)):
                proc.send_signal(signal.SIGKILL)
                time.sleep(rng.uniform(0.0, 0.4))
            for proc in procs:
                proc.wait(timeout=10)
        for hour in range(3, 20):
            if send_statuses(database_url) == Counter({"sent": 7 * CONTACTS}):
                break
            run_once(env, tmp_path, START + timedelta(hours=hour))
        sent = standin.sent()

    received = steps_by_recipient(sent)
    assert sorted(received) == emails, "a contact was lost"
    twice = {to: steps for to, steps in received.items() if max(Counter(steps).values()) > 1}
    assert twice == {}, "an email reached the provider twice"
    assert all(steps == [1, 2, 3, 4, 5, 6, 7] for steps in received.values()), "steps out of order"
    assert send_statuses(database_url) == Counter({"sent": 7 * CONTACTS})
