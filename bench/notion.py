"""Benchmark the Notion mirror against the stand-in Notion API held to Notion's ~3 requests/s.

    python bench/notion.py [--contacts 45] [--steady-seconds 30] [--latency-ms 40]

1. Catch-up: a backlog of new enrollments (page creates), then of sends (page updates); reports
   pages/s reached against the 3 requests/s ceiling, and any 429s the stand-in had to answer.
2. Steady load: signups arrive at a fixed rate while the sync job runs every 2 s, as in the
   worker; reports the lag from a change to its page write (p50 / p95 / max).
"""

import argparse
import math
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402

from core.bootstrap import build_services  # noqa: E402
from core.dispatch import Dispatcher  # noqa: E402
from core.intake import enroll_now  # noqa: E402
from core.models import Outbox  # noqa: E402
from core.notion.client import RATE, notion_from_settings  # noqa: E402
from core.notion.properties import EXPECTED  # noqa: E402
from core.notion.sync import NotionSync  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.side_status import backlog  # noqa: E402
from core.testing import FakeMailer  # noqa: E402
from tests.standins.notion_api import NotionStandIn  # noqa: E402
from tests.support import signup_request  # noqa: E402

outbox_t = Outbox.__table__


def pending(services) -> int:
    with services.engine.connect() as conn:
        return backlog(conn, "notion", services.clock()).pending


def catch_up(services, sync: NotionSync, api: NotionStandIn, label: str, pages: int) -> None:
    before, started = dict(api.stats), time.monotonic()
    while pending(services):
        if sync.run_pass().paused:
            time.sleep(0.5)  # the mirror backs off after failures; don't spin while it waits
    elapsed = time.monotonic() - started
    requests = api.stats["requests"] - before["requests"]
    print(f"{label:<22} {pages:>4} pages in {elapsed:6.1f}s  {pages / elapsed:5.2f} pages/s  "
          f"{requests / elapsed:5.2f} req/s of {RATE:g}  "
          f"({pages / elapsed / RATE:4.0%} of the ceiling, 429s: {api.stats['rate_limited'] - before['rate_limited']})")


def steady(services, sync: NotionSync, rate: float, seconds: float, offset: int) -> None:
    """Signups at `rate`, each sent its first email at once (two changes a contact, as in production)."""
    stop, since = threading.Event(), services.clock()

    def job() -> None:  # the worker's interval job, every 2 s
        while not stop.is_set():
            began = time.monotonic()
            sync.run_pass()
            stop.wait(max(0.0, 2.0 - (time.monotonic() - began)))

    worker = threading.Thread(target=job, daemon=True)
    worker.start()
    count, dispatcher = int(rate * seconds), Dispatcher(services, "bench")
    for i in range(count):
        enroll_now(services, [signup_request(email=f"steady{offset + i}@example.com")])
        dispatcher.run_pass()
        time.sleep(1 / rate)
    deadline = time.monotonic() + 60
    while pending(services) and time.monotonic() < deadline:
        time.sleep(0.2)
    stop.set()
    worker.join()
    with services.engine.connect() as conn:
        rows = conn.execute(sa.select(outbox_t.c.created_at, outbox_t.c.done_at).where(
            outbox_t.c.channel == "notion", outbox_t.c.created_at >= since)).all()
    lags = sorted((r.done_at - r.created_at).total_seconds() for r in rows if r.done_at)
    p95 = lags[math.ceil(0.95 * len(lags)) - 1]  # nearest rank
    print(f"steady {rate:g} signups/s     {len(lags):>4} changes  lag p50 {statistics.median(lags):5.2f}s  "
          f"p95 {p95:5.2f}s  max {lags[-1]:5.2f}s  (job every 2 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=45)
    parser.add_argument("--steady-seconds", type=float, default=30)
    parser.add_argument("--latency-ms", type=float, default=40, help="the stand-in's answer time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, NotionStandIn(rate_limit=3, latency_ms=args.latency_ms) as api:
        database = api.add_database(EXPECTED)
        settings = Settings(_env_file=None, database_url=f"sqlite:///{tmp}/bench.db", data_dir=tmp,
                            notion_token=api.token, notion_email_sequence_db_id=database, notion_api_url=api.url)
        services = build_services(settings, migrate=True, mailer=FakeMailer())
        client = notion_from_settings(settings)  # the production adapter: paced to 3 requests/s
        sync = NotionSync(services, client, "bench")
        try:
            print(f"Notion stand-in: 3 requests/s with bursts of 3, {args.latency_ms:g} ms per answer; "
                  f"client paced to {RATE:g}/s; SQLite")
            enroll_now(services, [signup_request(email=f"lead{i}@example.com") for i in range(args.contacts)])
            catch_up(services, sync, api, "catch-up: new pages", args.contacts)
            Dispatcher(services, "bench").run_pass()  # step 1 goes to everyone: one update per page
            catch_up(services, sync, api, "catch-up: updates", args.contacts)
            for rate, offset in ((1.0, 0), (2.0, 10_000), (3.0, 20_000)):
                steady(services, sync, rate, args.steady_seconds, offset)
        finally:
            client.close()
            services.close()


if __name__ == "__main__":
    main()
