"""Upgrading an older release's database that holds a campaign in flight, on SQLite and PostgreSQL.

Each test builds the database at an older revision, fills it with the rows that release wrote
(contacts, signups, enrollments, seven sends each in every status, a batch whose worker died,
events, outbox, a Notion page and the tally where they existed), upgrades it with
`python -m core db upgrade`, and checks that every row is intact, that `stats --json` and the
tally agree with counting the rows, and that `scheduler.py --once` sends exactly what is due.
"""

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from core import db, queries
from core.tables import (
    batch_t, contact_t, enrollment_t, event_t, outbox_t, page_t, send_t, setting_t, signup_t,
)
from tests.integration.test_cli import ROOT, SEND_STATUSES, cli_env, run_cli
from tests.support import counted, move_to_revision, tallied

NOW = datetime(2025, 12, 10, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
OFFSETS_H = (0, 24, 72, 120, 168, 216, 264)  # DESIGN §1, production timing
# Inserted parents first; every table an older release already had.
TABLES = (setting_t, contact_t, signup_t, enrollment_t, batch_t, send_t, event_t, outbox_t, page_t)


def _contact(key: str, *, created: datetime, **state) -> dict:
    return {"id": f"c_{key}", "email": f"{key}@example.com", "first_name": key.title(),
            "business_name": f"{key.title()} Ltd", "is_test": False, "created_at": created, "updated_at": created,
            "unsubscribed_at": None, "suppressed_at": None, "suppressed_reason": None, **state}


def _enrollment(key: str, segment: str, red: int, *, created: datetime, status: str = "active") -> dict:
    return {"id": f"e_{key}", "contact_id": f"c_{key}", "campaign": "Christmas 2025", "segment": segment,
            "timing": "production", "status": status, "status_reason": None, "red_systems": red,
            "orange_systems": 1, "yellow_systems": 2, "green_systems": 1, "assessment_score": 40.0,
            "created_at": created, "updated_at": created}


def _sends(key: str, created: datetime, states: dict[int, dict]) -> list[dict]:
    """Seven sends as the intake wrote them, then changed as `states` says (default: scheduled, not ready)."""
    rows = []
    for step, hours in enumerate(OFFSETS_H, start=1):
        planned = created + timedelta(hours=hours)
        row = {"id": f"s_{key}_{step}", "enrollment_id": f"e_{key}", "contact_id": f"c_{key}", "step": step,
               "generation": 1, "status": "scheduled", "ready": step == 1, "planned_at": planned, "due_at": planned,
               "attempts": 0, "last_error": None, "lease_owner": None, "lease_expires_at": None, "batch_id": None,
               "idempotency_key": None, "provider_id": None, "sent_at": None, "finished_at": None,
               "delivered_at": None, "opened_at": None, "clicked_at": None, "bounced_at": None,
               "complained_at": None, "created_at": created, "updated_at": created}
        rows.append({**row, **states.get(step, {})})
    return rows


def _sent(at: datetime, key: str, step: int, **more) -> dict:
    return {"status": "sent", "ready": True, "attempts": 1, "sent_at": at, "finished_at": at,
            "provider_id": f"re_{key}_{step}", "idempotency_key": f"key_{key}_{step}", **more}


def campaign_in_flight() -> dict[str, list[dict]]:
    """Six contacts: every send status, an unsubscribe, a bounce, and a batch left by a killed worker."""
    ann, bob, cat, dee, eve, fay = (NOW - 5 * DAY, NOW - DAY, NOW - 3 * DAY, NOW - timedelta(minutes=10),
                                    NOW - 12 * DAY, NOW - 2 * DAY)
    cancelled = {"status": "cancelled", "finished_at": NOW - DAY}
    return {
        "setting": [{"key": "test_mode", "value": "false", "updated_at": eve, "updated_by": "TESTING_MODE"},
                    {"key": "sending_paused", "value": "false", "updated_at": eve, "updated_by": "install"}],
        "contact": [_contact("ann", created=ann), _contact("bob", created=bob),
                    _contact("cat", created=cat, unsubscribed_at=NOW - DAY), _contact("dee", created=dee),
                    _contact("eve", created=eve),
                    _contact("fay", created=fay, suppressed_at=NOW - DAY, suppressed_reason="bounce")],
        "signup": [{"id": f"g_{k}", "contact_id": f"c_{k}", "received_at": at, "source": "webhook",
                    "outcome": "enrolled", "payload": json.dumps({"email": f"{k}@example.com", "red_systems": 2})}
                   for k, at in (("ann", ann), ("bob", bob), ("cat", cat), ("dee", dee), ("eve", eve), ("fay", fay))],
        "enrollment": [_enrollment("ann", "CRITICAL", 2, created=ann), _enrollment("bob", "URGENT", 1, created=bob),
                       _enrollment("cat", "OPTIMIZE", 0, created=cat, status="unsubscribed"),
                       _enrollment("dee", "CRITICAL", 3, created=dee),
                       _enrollment("eve", "OPTIMIZE", 0, created=eve, status="completed"),
                       _enrollment("fay", "URGENT", 1, created=fay, status="bounced")],
        # The killed worker's batch: handed to the provider ten minutes ago, its lease since expired.
        "send_batch": [{"id": "b_dee", "idempotency_key": "batch_dee_1", "size": 1, "attempts": 1,
                        "created_at": NOW - timedelta(minutes=9)}],
        "send": [
            # Steps 1-2 sent and engaged with; step 3 released and due since two days.
            *_sends("ann", ann, {1: _sent(ann, "ann", 1, delivered_at=ann, opened_at=ann),
                                 2: _sent(ann + DAY, "ann", 2, delivered_at=ann + DAY, clicked_at=ann + DAY),
                                 3: {"ready": True}}),
            # Step 1 refused for good; step 2 released on plan, due now.
            *_sends("bob", bob, {1: {"status": "failed", "attempts": 1, "finished_at": bob,
                                     "last_error": "422 invalid `to` address"},
                                 2: {"ready": True}}),
            *_sends("cat", cat, {1: _sent(cat, "cat", 1), **{s: cancelled for s in range(2, 8)}}),
            *_sends("dee", dee, {1: {"status": "sending", "attempts": 1, "batch_id": "b_dee",
                                     "idempotency_key": "batch_dee_1", "lease_owner": "old-worker",
                                     "lease_expires_at": NOW - timedelta(minutes=5)}}),
            *_sends("eve", eve, {1: {"status": "skipped", "ready": True, "finished_at": eve},
                                 **{s: _sent(eve + timedelta(hours=h), "eve", s, delivered_at=eve + timedelta(hours=h))
                                    for s, h in zip(range(2, 8), OFFSETS_H[1:], strict=True)}}),
            *_sends("fay", fay, {1: _sent(fay, "fay", 1, bounced_at=NOW - DAY), **{s: cancelled for s in range(2, 8)}}),
        ],
        "event": [{"at": NOW - DAY, "actor": "webhook", "kind": "signup_enrolled", "contact_id": "c_ann",
                   "enrollment_id": "e_ann", "send_id": None, "detail": json.dumps({"segment": "CRITICAL"})},
                  {"at": NOW - DAY, "actor": "resend", "kind": "contact_suppressed", "contact_id": "c_fay",
                   "enrollment_id": "e_fay", "send_id": "s_fay_1", "detail": json.dumps({"reason": "bounce"})}],
        "outbox": [{"id": "o_ann", "channel": "discord", "dedupe_key": "critical:c_ann", "contact_id": "c_ann",
                    "payload": json.dumps({"kind": "critical_lead", "enrollment_id": "e_ann"}), "created_at": ann,
                    "attempts": 1, "next_attempt_at": ann, "last_error": None, "done_at": ann},
                   {"id": "o_bob", "channel": "notion", "dedupe_key": None, "contact_id": "c_bob",
                    "payload": json.dumps({"enrollment_id": "e_bob"}), "created_at": bob, "attempts": 2,
                    "next_attempt_at": NOW + DAY, "last_error": "Notion 503", "done_at": None}],
        "notion_page": [{"enrollment_id": "e_ann", "contact_id": "c_ann", "page_id": "page-ann", "page_url": None,
                         "synced_hash": "h", "synced_at": ann, "business_page_id": None, "business_checked_at": None,
                         "lease_owner": None, "lease_expires_at": None, "last_error": None, "updated_at": ann}],
    }


def _as_of(conn: sa.Connection, table: sa.Table) -> sa.Table | None:
    """The table with only the columns it had at the database's revision (None if it did not exist)."""
    present = {c["name"] for c in sa.inspect(conn).get_columns(table.name)} if sa.inspect(conn).has_table(
        table.name) else set()
    return sa.Table(table.name, sa.MetaData(), *(c._copy() for c in table.c if c.name in present)) if present else None


def _snapshot(engine: sa.Engine, tables: dict[str, sa.Table]) -> dict[str, list[dict]]:
    with engine.connect() as conn:
        return {name: [dict(r._mapping) for r in conn.execute(sa.select(t).order_by(*t.primary_key.columns))]
                for name, t in tables.items()}


@pytest.fixture
def older_release(request, database_url):
    """A database at `request.param`, holding a campaign in flight; yields (engine, its tables as they were)."""
    engine = db.create_db_engine(database_url)
    move_to_revision(engine, database_url, request.param)
    with db.write_transaction(engine) as conn:
        tables = {t.name: old for t in TABLES if (old := _as_of(conn, t)) is not None}
        for name, rows in campaign_in_flight().items():
            if name in tables:
                conn.execute(tables[name].insert(), rows)
    try:
        yield engine, tables
    finally:
        engine.dispose()


def _scheduler_once(database_url: str, data_dir) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scheduler.py", "--once", "--now", NOW.isoformat()], cwd=ROOT,
                          env=cli_env(database_url, data_dir), capture_output=True, text=True, timeout=120)


def _sent_keys(engine: sa.Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT id, idempotency_key FROM send WHERE status = 'sent'")).all()


def _stats_from_rows(engine: sa.Engine) -> dict:
    """The `stats --json` document counted straight from the rows."""
    with engine.connect() as conn:
        scalar = lambda sql: conn.execute(sa.text(sql)).scalar_one()  # noqa: E731
        segments = dict(conn.execute(sa.text("SELECT segment, count(*) FROM enrollment GROUP BY segment")).all())
        sends = dict(conn.execute(sa.text("SELECT status, count(*) FROM send GROUP BY status")).all())
        return {"contacts": scalar("SELECT count(*) FROM contact"), "enrollments": sum(segments.values()),
                "segments": {s: segments.get(s, 0) for s in ("CRITICAL", "URGENT", "OPTIMIZE")},
                "sends": {s: sends.get(s, 0) for s in SEND_STATUSES},
                "unsubscribed": scalar("SELECT count(*) FROM contact WHERE unsubscribed_at IS NOT NULL "
                                       "AND suppressed_at IS NULL"),
                "suppressed": scalar("SELECT count(*) FROM contact WHERE suppressed_at IS NOT NULL")}


def _assert_counts_agree(engine: sa.Engine) -> dict:
    """The tally (behind `stats` and the dashboard) equals counting the rows; returns the stats document."""
    with engine.connect() as conn:
        assert tallied(conn) == counted(conn)
        stats = queries.stats(conn)
    assert stats == _stats_from_rows(engine)
    return stats


@pytest.mark.parametrize("older_release", ["0001", "0004", "0008"], indirect=True)
def test_an_older_releases_campaign_survives_the_upgrade_and_carries_on(older_release, database_url, tmp_path):
    engine, old_tables = older_release
    before = _snapshot(engine, old_tables)

    upgraded = run_cli("db", "upgrade", database_url=database_url, data_dir=tmp_path)

    assert upgraded.returncode == 0, upgraded.stderr
    assert db.upgrade(engine) is False, "db upgrade left the database short of the latest revision"
    assert _snapshot(engine, old_tables) == before, "a row the older release wrote changed in the upgrade"
    with engine.connect() as conn:  # columns added since then hold their defaults
        assert conn.execute(sa.text("SELECT refused_attempts, uncertain_since FROM send_batch")).one() == (0, None)
    printed = run_cli("stats", "--json", database_url=database_url, data_dir=tmp_path)
    assert printed.returncode == 0, printed.stderr
    stats = json.loads(printed.stdout)
    assert stats == _assert_counts_agree(engine)
    assert stats == {"contacts": 6, "enrollments": 6, "segments": {"CRITICAL": 2, "URGENT": 2, "OPTIMIZE": 2},
                     "sends": {"scheduled": 17, "sending": 1, "sent": 10, "failed": 1, "cancelled": 12, "skipped": 1},
                     "unsubscribed": 1, "suppressed": 1}

    worked = _scheduler_once(database_url, tmp_path)

    assert worked.returncode == 0, worked.stderr
    sent = dict(_sent_keys(engine))
    # What was due: Ann's step 3, Bob's step 2, and Dee's welcome replayed under its batch's key.
    assert sorted(set(sent) - {row["id"] for row in before["send"] if row["status"] == "sent"}) == [
        "s_ann_3", "s_bob_2", "s_dee_1"]
    assert sent["s_dee_1"] == "batch_dee_1"
    after = _assert_counts_agree(engine)
    assert after["sends"] == {**stats["sends"], "scheduled": 15, "sending": 0, "sent": 13}


# Revisions that were changed in place after main had migrated databases with them: (revision, what its
# first form did instead, run on a database at the revision before it).
FIRST_FORMS = {
    # 0001 until 3b60103/b774835 (2026-11-28): a send.to_override column, no erasure or job_lease table.
    "0001": lambda conn: (conn.execute(sa.text("DROP TABLE erasure")), conn.execute(sa.text("DROP TABLE job_lease")),
                          conn.execute(sa.text("ALTER TABLE send ADD COLUMN to_override VARCHAR(254)"))),
    # 0005 until 7590074: ix_enrollment_segment kept (0005 now drops it).
    "0005": lambda conn: conn.execute(sa.text("CREATE INDEX ix_enrollment_segment ON enrollment (segment)")),
    # 0008 until a05f629 (2026-11-29): only refused_attempts, no uncertain_since.
    "0008": lambda conn: conn.execute(sa.text("ALTER TABLE send_batch DROP COLUMN uncertain_since")),
}


@pytest.mark.parametrize("revision", FIRST_FORMS)
def test_a_database_migrated_by_a_revisions_first_form_is_brought_to_the_models(database_url, revision):
    """A database migrated by a revision's first form records that revision but not its final schema; the
    upgrade brings it to the models. Left alone, 0008's made every dispatch pass fail ("no such column:
    send_batch.uncertain_since") and 0001's kept the Notion sync and alerts from running (no job_lease)."""
    engine = db.create_db_engine(database_url)
    cfg = db.alembic_config(database_url)
    try:
        with db.write_transaction(engine) as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            FIRST_FORMS[revision](conn)

        assert db.upgrade(engine) is True

        with engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
        # A column nothing reads or writes any more is left in place: dropping it would rebuild send on SQLite.
        assert [d for d in differences if d[0] != "remove_column" or d[3].name != "to_override"] == []
    finally:
        engine.dispose()


# An upgrade that stops, as if the machine lost power, just before migration 0009's first statement.
_UPGRADE_THAT_STOPS = """
import sys, time
import sqlalchemy as sa
from core import db
engine = db.create_db_engine(sys.argv[1])
@sa.event.listens_for(engine, "before_cursor_execute")
def stop(conn, cursor, statement, *_):
    if "CREATE TABLE erasure_hold" in statement:
        print("stopped", flush=True)
        time.sleep(120)
db.upgrade(engine)
"""


@pytest.mark.parametrize("older_release", ["0004"], indirect=True)
def test_an_upgrade_killed_midway_leaves_the_older_database_whole_and_runs_again(older_release, database_url):
    """Every pending migration runs in one transaction: SIGKILL after 0005-0008 ran leaves 0004 as it was."""
    engine, old_tables = older_release
    before = _snapshot(engine, old_tables)
    upgrading = subprocess.Popen([sys.executable, "-c", _UPGRADE_THAT_STOPS, database_url], cwd=ROOT,
                                 stdout=subprocess.PIPE, text=True)
    try:
        assert upgrading.stdout.readline().strip() == "stopped"
    finally:
        upgrading.kill()
        upgrading.wait(timeout=30)
        upgrading.stdout.close()

    assert db.current_revision(engine) == "0004"
    with engine.connect() as conn:
        assert not sa.inspect(conn).has_table("tally")
    assert _snapshot(engine, old_tables) == before
    assert db.upgrade(engine) is True
    assert _snapshot(engine, old_tables) == before
    _assert_counts_agree(engine)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_undoing_0005_on_a_database_from_its_first_form_leaves_no_trigger_behind(database_url):
    """0005's first form (until 7590074) gave SQLite one insert trigger per table, named tally_<table>_insert;
    undoing 0005 dropped only today's names, and the one left made every signup fail (no such table: tally)."""
    engine = db.create_db_engine(database_url)
    cfg = db.alembic_config(database_url)
    try:
        with db.write_transaction(engine) as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0005")
            for table in ("send", "enrollment"):  # the first form's name; its body only matters in that it reads tally
                conn.execute(sa.text(f"CREATE TRIGGER tally_{table}_insert AFTER INSERT ON {table} "
                                     "BEGIN UPDATE tally SET n = n WHERE kind = ''; END"))
            command.downgrade(cfg, "0004")
        with db.write_transaction(engine) as conn:
            tables = {t.name: _as_of(conn, t) for t in (contact_t, enrollment_t, send_t)}
            rows = campaign_in_flight()
            for name in ("contact", "enrollment"):
                conn.execute(tables[name].insert(), rows[name])
            conn.execute(tables["send"].insert(), [row for row in rows["send"] if row["batch_id"] is None])
    finally:
        engine.dispose()
