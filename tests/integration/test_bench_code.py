"""The benchmarks' own code: bench/fill.py's campaign, the page reads bench/dashboard.py and
bench/scale.py time, and a short run of bench/intake.py.

Nothing else runs them, and a benchmark that fails at its first step measures nothing: one did,
unnoticed, after a dashboard query gained a parameter.
"""

import importlib.util
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from core import db
from core.queries import stats

BENCH = Path(__file__).resolve().parents[2] / "bench"
CONTACTS = 1100  # the timeline read opens the 1,001st contact


@pytest.fixture(autouse=True)
def sys_path_restored(monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))  # bench/dashboard.py puts bench/ first on it


def _bench_module(name: str):
    # By path and under a name of its own: bench/dashboard.py would otherwise be the dashboard's entry point.
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def filled(services):
    now = datetime.now(UTC)
    _bench_module("fill").fill(services.engine, CONTACTS, now=now, seed=3)
    return services, now


def test_the_filled_campaign_is_one_the_product_could_have_written(filled):
    services, now = filled
    send = sa.table("send", *(sa.column(c) for c in ("contact_id", "sent_at", "finished_at", "delivered_at",
                                                      "opened_at", "clicked_at", "bounced_at")))
    contact = sa.table("contact", sa.column("id"), sa.column("unsubscribed_at"), sa.column("suppressed_at"))
    with db.read_transaction(services.engine) as conn:
        for column in ("sent_at", "finished_at", "delivered_at", "opened_at", "clicked_at", "bounced_at"):
            later = conn.scalar(sa.select(sa.func.count()).select_from(send).where(send.c[column] > now))
            assert later == 0, f"{column}: {later} sends stamped after the moment filled"
        for column in ("unsubscribed_at", "suppressed_at"):
            assert conn.scalar(sa.select(sa.func.count()).select_from(contact).where(contact.c[column] > now)) == 0
        bounced = conn.scalar(sa.select(sa.func.count()).select_from(contact).where(contact.c.suppressed_at.is_not(None)))
        without_a_bounce = conn.scalar(
            sa.select(sa.func.count()).select_from(contact).where(
                contact.c.suppressed_at.is_not(None),
                ~sa.exists().where(send.c.contact_id == contact.c.id, send.c.bounced_at.is_not(None))))
        # An opening needs a delivery, and a bounced email is neither delivered nor opened.
        opened_undelivered = conn.scalar(sa.select(sa.func.count()).select_from(send).where(
            send.c.opened_at.is_not(None), send.c.delivered_at.is_(None)))
        bounced_and_delivered = conn.scalar(sa.select(sa.func.count()).select_from(send).where(
            send.c.bounced_at.is_not(None), send.c.delivered_at.is_not(None)))
        figures = stats(conn)
    assert bounced > 0 and without_a_bounce == 0
    assert opened_undelivered == 0 and bounced_and_delivered == 0
    assert figures["contacts"] == figures["enrollments"] == CONTACTS
    assert sum(figures["sends"].values()) == 7 * CONTACTS
    assert figures["sends"]["sent"] > 0 and figures["sends"]["scheduled"] > 0


def test_every_page_read_the_dashboard_benchmark_times_runs_on_a_filled_campaign(filled):
    services, _ = filled
    pages = _bench_module("dashboard").PAGE_DATA
    assert {name for name, _ in pages} >= {"overview", "sends", "settings", "signups: timeline"}
    for name, load in pages:
        assert load(services) is not None, name


def test_a_fill_in_a_second_call_adds_contacts_rather_than_colliding(services):
    fill = _bench_module("fill").fill
    now = datetime.now(UTC) - timedelta(minutes=1)
    fill(services.engine, 50, now=now, seed=5)
    fill(services.engine, 50, now=now, seed=5, start_index=50)  # as bench/scale.py grows its campaign
    with db.read_transaction(services.engine) as conn:
        assert stats(conn)["contacts"] == 100


@pytest.mark.e2e
def test_the_intake_benchmark_runs_with_a_client_as_heavy_as_httpx():
    """bench/intake.py end to end on SQLite, with the raw client spending CPU per request as httpx would."""
    run = subprocess.run([sys.executable, str(BENCH / "intake.py"), "--requests", "60", "--warmup", "10",
                          "--rounds", "1", "--client", "raw", "--client-cpu-ms", "1", "--database-floor",
                          "--lighter-schema"],
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "(raw client spending 1 ms of CPU per request)" in run.stdout
    assert "stored                              70 enrollments, 490 sends (expected 70 and 490)  PASS" in run.stdout
    assert "note: the load generator used over 80%" not in run.stdout  # that client is busy by design
    assert "note: --database-floor runs on PostgreSQL only" in run.stdout
    assert "database floor, same writer" not in run.stdout
    assert "note: --lighter-schema runs on PostgreSQL only" in run.stdout
    assert "lighter schema" not in run.stdout.replace("note: --lighter-schema", "")


@pytest.mark.e2e
@pytest.mark.postgres
def test_the_intake_benchmark_measures_the_database_floor_and_a_lighter_schema_on_postgresql(pg_url):
    """--database-floor reads a real batch's database CPU from /proc and serves the writer doing only that much;
    --lighter-schema serves the real webhook again on a database of its own without a send's foreign keys and
    the tally's insert triggers."""
    server = make_url(pg_url)
    bench_url = server.set(database=f"{server.database}_floor").render_as_string(hide_password=False)
    run = subprocess.run([sys.executable, str(BENCH / "intake.py"), "--requests", "60", "--warmup", "10",
                          "--rounds", "1", "--client", "raw", "--database-floor", "--lighter-schema",
                          "--database-url", bench_url],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    cpu = re.search(r"^database CPU per batch +([0-9.]+) ms for 3 signups", run.stdout, re.MULTILINE)
    assert cpu and float(cpu.group(1)) > 0, run.stdout
    assert re.search(r"^database floor, same writer +[1-9]\d* +[0-9.]+ +[0-9.]+ +0 ", run.stdout, re.MULTILINE), run.stdout
    assert re.search(r"^ratio floor / free +[0-9.]+ ", run.stdout, re.MULTILINE), run.stdout
    # The real webhook's 70 signups and the measurement's 320 batches of 3; the floor stores nothing.
    assert "stored                            1030 enrollments, 7210 sends (expected 1030 and 7210)  PASS" in run.stdout
    assert re.search(r"^real, lighter schema +[1-9]\d* +[0-9.]+ +[0-9.]+ +0 ", run.stdout, re.MULTILINE), run.stdout
    assert re.search(r"^ratio lighter / free +[0-9.]+ +\(no foreign keys from a send, no tally on insert: [+-]\d+% "
                     r"on the real webhook\)$", run.stdout, re.MULTILINE), run.stdout
    assert "stored, lighter schema              70 enrollments, 490 sends (expected 70 and 490)  PASS" in run.stdout
    admin = sa.create_engine(server.set(database="postgres"), poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        left = conn.scalars(sa.text("SELECT datname FROM pg_database WHERE datname IN (:a, :b)"),
                            {"a": f"{server.database}_floor", "b": f"{server.database}_floor_lighter"}).all()
    admin.dispose()
    assert left == []  # both of its databases dropped


@pytest.mark.parametrize(("args", "problem"), [
    (["--client-cpu-ms", "1"], "--client-cpu-ms applies to --client raw only"),
    (["--client", "raw", "--client-cpu-ms", "-1"], "--client-cpu-ms must be 0 or more"),
])
def test_the_intake_benchmark_names_a_client_cost_it_cannot_use(args, problem):
    run = subprocess.run([sys.executable, str(BENCH / "intake.py"), *args], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and problem in run.stderr and "Traceback" not in run.stderr
