"""Fill a database with a realistic campaign: N contacts, 7 sends each, in believable states.

Used by the scale and dashboard benchmarks. PostgreSQL is filled with COPY, SQLite with
executemany in large transactions; both go through the real schema (migrated first).
"""

import argparse
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from core import db
from core.campaign import CHRISTMAS_2025, Timing
from core.sequencing import plan_schedule

SEGMENTS = (("CRITICAL", 0.2), ("URGENT", 0.35), ("OPTIMIZE", 0.45))
CONTACT_COLS = ("id", "email", "first_name", "business_name", "is_test", "created_at", "updated_at",
                "unsubscribed_at", "suppressed_at", "suppressed_reason")
ENROLLMENT_COLS = ("id", "contact_id", "campaign", "segment", "timing", "status", "red_systems",
                   "orange_systems", "created_at", "updated_at")
SEND_COLS = ("id", "enrollment_id", "contact_id", "step", "generation", "status", "ready", "planned_at", "due_at",
             "attempts", "last_error", "provider_id", "sent_at", "finished_at", "delivered_at", "opened_at",
             "clicked_at", "bounced_at", "created_at", "updated_at")


def _segment(rng: random.Random) -> str:
    roll, acc = rng.random(), 0.0
    for name, share in SEGMENTS:
        acc += share
        if roll < acc:
            return name
    return SEGMENTS[-1][0]


def contact_rows(index: int, now: datetime, rng: random.Random, span_days: int = 30):
    """One contact, its enrollment and its 7 sends, in a state consistent with its signup time."""
    signed_up = now - timedelta(seconds=rng.uniform(0, span_days * 86400))
    cid, eid = uuid.uuid4().hex, uuid.uuid4().hex
    fate = rng.random()
    unsubscribed = signed_up + timedelta(days=rng.uniform(1, 8)) if fate < 0.02 else None
    bounced = signed_up + timedelta(hours=1) if 0.02 <= fate < 0.03 else None
    # A fate still ahead of `now` has not happened yet: nothing may be stamped after the moment filled.
    unsubscribed, bounced = (at if at and at <= now else None for at in (unsubscribed, bounced))
    stopped_at = unsubscribed or bounced
    contact = (cid, f"lead{index}@example{index % 97}.com", f"Lead{index}", f"Business {index}", index % 50 == 0,
               signed_up, signed_up, unsubscribed, bounced, "bounced" if bounced else None)
    segment = _segment(rng)
    red = {"CRITICAL": 2 + index % 3, "URGENT": 1}.get(segment, 0)
    sends, previous_pending, all_done = [], False, True
    for planned in plan_schedule(CHRISTMAS_2025, signed_up, Timing.PRODUCTION):
        due = planned.planned_at
        if stopped_at and due >= stopped_at:
            status, all_done = "cancelled", all_done
            row = _send(eid, cid, planned.step, status, False, planned.planned_at, due, signed_up)
            row[10] = "cancelled: unsubscribed" if unsubscribed else "cancelled: bounced"
            row[13] = stopped_at
        elif due <= now and not previous_pending:
            failed = not bounced and rng.random() < 0.01  # a bounce needs a sent email
            row = _send(eid, cid, planned.step, "failed" if failed else "sent", True, planned.planned_at, due,
                        signed_up)
            finished = due + timedelta(seconds=rng.uniform(0.2, 5))
            row[13] = finished
            if failed:
                row[10] = "422 invalid `to` address"
            else:
                row[11], row[12] = f"re_{uuid.uuid4().hex}", finished
                if bounced and planned.step == 1:  # the address bounced the welcome email
                    row[17] = bounced
                else:
                    delivered, opened, clicked = (finished + timedelta(seconds=5), finished + timedelta(hours=2),
                                                  finished + timedelta(hours=3))
                    if rng.random() < 0.95 and delivered <= now:
                        row[14] = delivered
                    if rng.random() < 0.45 and row[14] and opened <= now:
                        row[15] = opened
                        if rng.random() < 0.25 and clicked <= now:
                            row[16] = clicked
        else:
            ready = not previous_pending
            row = _send(eid, cid, planned.step, "scheduled", ready, planned.planned_at, due, signed_up)
            previous_pending, all_done = True, False
        sends.append(tuple(row))
    status = "unsubscribed" if unsubscribed else "bounced" if bounced else ("completed" if all_done else "active")
    enrollment = (eid, cid, CHRISTMAS_2025.name, segment, "production", status, red, index % 3, signed_up, signed_up)
    return contact, enrollment, sends


def _send(eid, cid, step, status, ready, planned, due, created) -> list:
    return [uuid.uuid4().hex, eid, cid, step, 1, status, ready, planned, due, 1 if status != "scheduled" else 0,
            None, None, None, None, None, None, None, None, created, created]


def fill(engine: sa.Engine, contacts: int, *, now: datetime, seed: int = 7, chunk: int = 20_000,
         start_index: int = 0) -> float:
    """Insert `contacts` contacts (and 7 sends each); returns seconds taken."""
    rng = random.Random(seed + start_index)
    began = time.perf_counter()
    for offset in range(0, contacts, chunk):
        rows = [contact_rows(start_index + i, now, rng) for i in range(offset, min(contacts, offset + chunk))]
        _write(engine, rows)
    return time.perf_counter() - began


def _write(engine: sa.Engine, rows) -> None:
    tables = {"contact": (CONTACT_COLS, [r[0] for r in rows]),
              "enrollment": (ENROLLMENT_COLS, [r[1] for r in rows]),
              "send": (SEND_COLS, [s for r in rows for s in r[2]])}
    if engine.dialect.name == "postgresql":
        raw = engine.raw_connection()
        try:
            with raw.cursor() as cur:
                for table, (cols, data) in tables.items():
                    with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                        for record in data:
                            copy.write_row(record)
            raw.commit()
        finally:
            raw.close()
        return
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("BEGIN IMMEDIATE")
        for table, (cols, data) in tables.items():
            marks = ", ".join("?" for _ in cols)
            cur.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})",
                            [tuple(_sqlite_value(v) for v in record) for record in data])
        cur.execute("COMMIT")
    finally:
        raw.close()


def _sqlite_value(value):
    # The format SQLAlchemy's SQLite DateTime writes (naive UTC), so the app reads these rows back.
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--contacts", type=int, default=100_000)
    args = parser.parse_args()
    engine = db.create_db_engine(args.database_url)
    db.upgrade(engine)
    seconds = fill(engine, args.contacts, now=datetime.now(UTC))
    print(f"filled {args.contacts:,} contacts ({args.contacts * 7:,} sends) in {seconds:.1f} s")


if __name__ == "__main__":
    main()
