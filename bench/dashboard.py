"""Dashboard benchmark: every page's data functions and a full AppTest run of every page, on a big SQLite.

    .venv/bin/python bench/dashboard.py                    # 200,000 contacts (1.4 M sends)
    .venv/bin/python bench/dashboard.py --contacts 1000000
    .venv/bin/python bench/dashboard.py --db /tmp/big.db --reuse --browser

The database is filled by bench/fill.py (executemany in large transactions) plus an audit trail
(one event per signup and per email sent). Timings run in a fresh child process, so its RSS is
the dashboard's own; --browser also serves the real dashboard and reads the server's RSS after a
headless Chromium has opened every page. Target: every page <= 1 s.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from core import db, queries  # noqa: E402

TARGET_SECONDS = 1.0
PAGES = ["pages/overview.py", "pages/signups.py", "pages/sends.py", "pages/test_signup.py", "pages/templates.py",
         "pages/settings.py"]
# Static SQL for the bench's own audit trail; nothing here comes from input.
AUDIT_FILL = [
    "INSERT INTO event (at, actor, kind, contact_id, enrollment_id, detail) SELECT created_at, 'webhook', "
    "'signup_enrolled', contact_id, id, '{\"source\": \"webhook\"}' FROM enrollment",
    "INSERT INTO event (at, actor, kind, contact_id, enrollment_id, send_id, detail) SELECT finished_at, "
    "'worker', 'send_sent', contact_id, enrollment_id, id, '{\"step\": ' || step || '}' FROM send "
    "WHERE status = 'sent'",
    "INSERT INTO worker (id, host, pid, started_at, last_seen) VALUES ('bench', 'bench', 1, "
    "strftime('%Y-%m-%d %H:%M:%f', 'now'), strftime('%Y-%m-%d %H:%M:%f', 'now'))",
]


def _read(services, query, *args, **kwargs):
    with db.read_transaction(services.engine) as conn:
        return query(conn, *args, **kwargs)


def _signups(services, where=queries.ContactFilter(), offset=0):
    return _read(services, queries.count_contacts, where), _read(services, queries.contact_page, where,
                                                                  offset=offset, limit=50)


def _timeline(services):
    [row] = _read(services, queries.contact_page, queries.ContactFilter(), offset=1000, limit=1)
    return _read(services, queries.contact_detail, row["contact_id"], services.clock())


def _sends(services):
    now = services.clock()
    return [_read(services, queries.queue_counts, now)] + [_read(services, queries.queue_list, name, now=now)
                                                           for name in queries.LISTS]


def _settings(services):
    from core import side_status

    now = services.clock()
    return (_read(services, queries.system_state, now), _read(services, queries.latest_action, "check_connection"),
            _read(services, side_status.notion_overview, now), _read(services, side_status.backlog, "discord", now),
            _read(services, queries.audit_count), _read(services, queries.audit_page, offset=0, limit=50))


# (name, load(services)): what each page reads; bench/scale.py reuses this list.
PAGE_DATA = [
    ("sidebar (every page)", lambda s: _read(s, queries.system_state, s.clock())),
    ("overview", lambda s: _read(s, queries.overview_data, s.clock(), days=30)),
    ("signups: first page", _signups),
    ("signups: page 2,000", lambda s: _signups(s, offset=100_000)),
    ("signups: URGENT + search", lambda s: _signups(s, queries.ContactFilter(segments=("URGENT",), search="lead19"))),
    ("signups: timeline", _timeline),
    ("sends", _sends),
    ("settings", _settings),
]


def fill_database(path: Path, contacts: int) -> float:
    from fill import fill  # bench/fill.py: contacts, enrollments and sends in believable states

    engine = db.create_db_engine(f"sqlite:///{path}")
    try:
        db.upgrade(engine)
        seconds = fill(engine, contacts, now=datetime.now(UTC))
        began = time.perf_counter()
        with engine.begin() as conn:
            for statement in AUDIT_FILL:
                conn.exec_driver_sql(statement)
            conn.exec_driver_sql("ANALYZE")
        with engine.connect() as conn:  # fold the WAL into the file: readers then skip the WAL index
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        return seconds + time.perf_counter() - began
    finally:
        engine.dispose()


def measure(path: Path) -> dict:
    """Run in the child: data functions (cold, then best of 3) and AppTest page runs, then RSS."""
    from core.bootstrap import build_services
    from core.settings import Settings

    services = build_services(Settings(_env_file=None, database_url=f"sqlite:///{path}", data_dir=str(path.parent)))
    data = {}
    for name, load in PAGE_DATA:
        runs = []
        for _ in range(4):
            began = time.perf_counter()
            load(services)
            runs.append(time.perf_counter() - began)
        data[name] = {"cold": runs[0], "warm": min(runs[1:])}
    services.close()
    return {"data": data, "apptest": _apptest(path), "rss_mb": _rss_mb(), "peak_rss_mb": _peak_rss_mb()}


def _apptest(path: Path) -> dict:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    os.environ.update(DATABASE_URL=f"sqlite:///{path}", DATA_DIR=str(path.parent))
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=120)
    began = time.perf_counter()
    at.run()
    timings = {"first run (imports, services)": time.perf_counter() - began}
    for page in PAGES:
        at.switch_page(page)
        st.cache_data.clear()  # each page pays for its own data, as on a first visit
        began = time.perf_counter()
        at.run()
        assert not at.exception, f"{page}: {at.exception}"
        timings[page] = time.perf_counter() - began
    return timings


def _rss_mb(pid: str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_in_child(path: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--measure", str(path)], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def served_rss(path: Path) -> float:
    """Serve the real dashboard, open every page in headless Chromium, return the server's RSS in MB."""
    sys.path.insert(0, str(ROOT / "tests" / "e2e"))
    from test_dashboard_browser import browser_page, free_port, serve_dashboard  # noqa: PLC0415

    port = free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{path}", "DATA_DIR": str(path.parent)}
    with serve_dashboard(port, env) as server, browser_page() as page:
        for name in ["", "signups", "sends", "test_signup", "templates", "settings"]:
            page.goto(f"http://127.0.0.1:{port}/{name}")
            page.get_by_role("heading", level=1).first.wait_for(timeout=60_000)
            page.wait_for_timeout(1500)
        return _rss_mb(str(server.pid))


def report(contacts: int, fill_seconds: float | None, result: dict, rss_served: float | None) -> None:
    print(f"\nDashboard benchmark: {contacts:,} contacts ({contacts * 7:,} sends), SQLite")
    if fill_seconds is not None:
        print(f"  fill: {fill_seconds:.0f} s")
    print(f"\n  {'data functions':32} {'cold':>8} {'warm':>8}")
    for name, t in result["data"].items():
        flag = "" if t["cold"] <= TARGET_SECONDS else "  > 1 s"
        print(f"  {name:32} {t['cold']:7.3f}s {t['warm']:7.3f}s{flag}")
    print(f"\n  {'AppTest, full page run':32} {'seconds':>8}")
    for name, seconds in result["apptest"].items():
        flag = "" if seconds <= TARGET_SECONDS or name.startswith("first") else "  > 1 s"
        print(f"  {name:32} {seconds:7.3f}s{flag}")
    print(f"\n  RSS of the measuring process: {result['rss_mb']:.0f} MB (peak {result['peak_rss_mb']:.0f} MB)")
    if rss_served is not None:
        print(f"  RSS of `streamlit run dashboard.py` after every page was opened: {rss_served:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=200_000)
    parser.add_argument("--db", type=Path, help="SQLite file (default: a temporary folder)")
    parser.add_argument("--reuse", action="store_true", help="keep an existing --db instead of refilling it")
    parser.add_argument("--browser", action="store_true", help="also measure a served dashboard's RSS")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the child process's entry
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    path = args.db or Path(tempfile.mkdtemp(prefix="nurture-bench-")) / f"dashboard-{args.contacts}.db"
    fill_seconds = None
    if not (args.reuse and path.exists()):
        path.unlink(missing_ok=True)
        fill_seconds = fill_database(path, args.contacts)
    result = measure_in_child(path)
    report(args.contacts, fill_seconds, result, served_rss(path) if args.browser else None)


if __name__ == "__main__":
    main()
