"""Scale benchmark on PostgreSQL: enrollment rate, a dispatch pass over a 10,000-email backlog, and
every dashboard page's data time, at each size of a growing campaign (default 100 k then 1 M contacts).

    .venv/bin/python bench/scale.py [--sizes 100000,1000000] [--admin-url postgresql+psycopg://postgres@127.0.0.1/test]

Targets: dashboard pages <= 1 s at 1 M; a dispatch claim/mark cost per email that stays flat.
"""

import argparse
import importlib.util
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fill import fill  # noqa: E402

from core.bootstrap import build_services  # noqa: E402
from core.dispatch import Dispatcher  # noqa: E402
from core.enrollments import SignupRequest  # noqa: E402
from core.intake import enroll_now  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.signups import parse_signup  # noqa: E402


def measure_enrollment(services, count: int, batch: int = 64) -> float:
    """Signups/s through the enrollment service in group-commit-sized batches."""
    tag = uuid.uuid4().hex[:6]
    began = time.perf_counter()
    for start in range(0, count, batch):
        enroll_now(services, [SignupRequest(parse_signup({"email": f"scale-{tag}-{i}@example.com",
                                                          "red_systems": i % 3, "first_name": "Sam"}))
                              for i in range(start, min(count, start + batch))])
    return count / (time.perf_counter() - began)


def measure_dispatch(services) -> tuple[int, float]:
    """One dispatch pass (dry-run mailer, no network) over everything due; (emails, ms per email)."""
    began = time.perf_counter()
    handled = Dispatcher(services, f"bench-{uuid.uuid4().hex[:6]}").run_pass()
    elapsed = time.perf_counter() - began
    return handled, elapsed * 1000 / max(handled, 1)


def measure_pages(services) -> dict[str, float]:
    """Seconds per dashboard page's data functions (from bench/dashboard.py's page list)."""
    # bench/dashboard.py holds the page list; it is loaded by path, since the name `dashboard`
    # belongs to the Streamlit entrypoint at the repository root.
    spec = importlib.util.spec_from_file_location("dashboard_bench", Path(__file__).with_name("dashboard.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    timings = {}
    for name, load in module.PAGE_DATA:
        began = time.perf_counter()
        load(services)
        timings[name] = time.perf_counter() - began
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--backlog", type=int, default=10_000)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    name = f"nurture_scale_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(args.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(args.admin_url).set(database=name).render_as_string(hide_password=False)
    results = []
    try:
        services = build_services(Settings(_env_file=None, database_url=url, data_dir="/tmp/nurture-scale"),
                                  migrate=True)
        filled = 0
        for size in sizes:
            fill_s = fill(services.engine, size - filled, now=datetime.now(UTC), start_index=filled)
            filled = size
            with services.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                # What autovacuum does on a live database. A table just filled by COPY has no
                # visibility map yet, so index-only scans would visit the heap for every row.
                conn.exec_driver_sql("VACUUM ANALYZE")
            rate = measure_enrollment(services, args.backlog)
            handled, per_email = measure_dispatch(services)
            pages = measure_pages(services)
            results.append((size, fill_s, rate, handled, per_email, pages))
            print(f"{size:>9,} contacts: filled in {fill_s:.0f} s; enrollment {rate:,.0f} signups/s; "
                  f"dispatch pass {handled:,} emails at {per_email:.2f} ms/email; "
                  + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in pages.items()), flush=True)
        services.close()
    finally:
        if not args.keep:
            with admin.connect() as conn:
                conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                     "WHERE datname = :d AND pid <> pg_backend_pid()"), {"d": name})
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        admin.dispose()
    _report(results)


def _report(results) -> None:
    print("\nsize        enroll/s   dispatch ms/email   slowest page")
    for size, _, rate, _, per_email, pages in results:
        slowest = max(pages.items(), key=lambda kv: kv[1]) if pages else ("-", 0.0)
        print(f"{size:>9,}   {rate:>8,.0f}   {per_email:>17.2f}   {slowest[0]} {slowest[1] * 1000:.0f} ms")
    if len(results) > 1:
        first, last = results[0], results[-1]
        print(f"dispatch cost growth {first[0]:,} -> {last[0]:,}: x{last[4] / first[4]:.2f} (target: flat, ~x1)")
        print("targets: dashboard pages <= 1000 ms at 1 M")


if __name__ == "__main__":
    main()
