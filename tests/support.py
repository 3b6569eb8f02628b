"""Small helpers shared by the tests: a controllable clock, payload builders and row counts."""

import base64
import itertools
import json
import threading
import uuid
import warnings
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
from svix.webhooks import Webhook

from core import db, tally
from core.enrollments import SignupRequest
from core.signups import parse_signup
from core.statuses import SendStatus, can_transition

START = datetime(2025, 12, 1, 9, 0, tzinfo=UTC)
# The tables a signup writes; "nothing stored" means none of them grew.
INTAKE_TABLES = ("contact", "signup", "enrollment", "send")

# The seed's test signups and the segment each must land in.
SEED_SIGNUPS = [
    ({"email": "critical@example.com", "first_name": "Casey", "business_name": "Crumbling Co", "red_systems": 2,
      "orange_systems": 1, "yellow_systems": 1, "green_systems": 0, "assessment_score": 31}, "CRITICAL"),
    ({"email": "urgent@example.com", "first_name": "Uma", "business_name": "Uneven Ltd", "red_systems": 1,
      "orange_systems": 1, "yellow_systems": 2, "green_systems": 1, "assessment_score": 55}, "URGENT"),
    ({"email": "optimize@example.com", "first_name": "Otto", "business_name": "Orderly plc", "red_systems": 0,
      "orange_systems": 1, "yellow_systems": 2, "green_systems": 3, "assessment_score": 82}, "OPTIMIZE"),
]

_counter = itertools.count(1)

# Starlette 1.x warns (at import) that its TestClient prefers httpx2; the locked environment ships
# httpx, which still works. Only that one warning is silenced, and only around this import.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from fastapi.testclient import TestClient  # noqa: E402


class FrozenClock:
    """A clock that stands still until told to move; calling it returns the aware UTC instant."""

    def __init__(self, start: datetime | str = START):
        if isinstance(start, str):
            start = datetime.fromisoformat(start.replace("Z", "+00:00"))
        if start.tzinfo is None:
            raise ValueError("FrozenClock needs an aware datetime")
        self._lock = threading.Lock()
        self._now = start.astimezone(UTC)

    @property
    def now(self) -> datetime:
        with self._lock:
            return self._now

    @now.setter
    def now(self, value: datetime) -> None:
        if value.tzinfo is None:
            raise ValueError("FrozenClock needs an aware datetime")
        with self._lock:
            self._now = value.astimezone(UTC)

    def advance(self, seconds: float = 0, *, minutes: float = 0, hours: float = 0, days: float = 0) -> datetime:
        """Move the clock forward and return the new instant."""
        with self._lock:
            self._now += timedelta(seconds=seconds, minutes=minutes, hours=hours, days=days)
            return self._now

    def __call__(self) -> datetime:
        return self.now


class ManualMonotonic:
    """A monotonic clock in seconds that moves only when a test sets `now`."""

    def __init__(self, start: float = 500.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def unique_email(prefix: str = "person") -> str:
    return f"{prefix}{next(_counter)}@example.com"


def signup(**fields) -> dict:
    """A valid webhook body (an OPTIMIZE lead by default); keyword arguments override or add fields."""
    body = {
        "email": "alex@example.com", "first_name": "Alex", "business_name": "Acme Ltd",
        "red_systems": 0, "orange_systems": 1, "yellow_systems": 2, "green_systems": 3, "assessment_score": 72,
    }
    body.update(fields)
    return {k: v for k, v in body.items() if v is not ...}


def signup_request(*, source: str = "test", force_test_timing: bool = False, **fields) -> SignupRequest:
    """A validated SignupRequest, parsed exactly as the webhook parses its body."""
    return SignupRequest(parse_signup(signup(**fields)), source=source, force_test_timing=force_test_timing)


def move_to_revision(engine: sa.Engine, database_url: str, revision: str, *, down: bool = False) -> None:
    """Upgrade (or downgrade) the database to `revision` on a connection of `engine`, as an older release left it."""
    from alembic import command

    cfg = db.alembic_config(database_url)
    with db.write_transaction(engine) as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)


def count_rows(engine: sa.Engine, table_name: str) -> int:
    with engine.connect() as conn:
        return conn.scalar(sa.select(sa.func.count()).select_from(sa.table(table_name)))


def intake_counts(engine: sa.Engine) -> dict[str, int]:
    """Row counts of every table a signup writes to."""
    return {name: count_rows(engine, name) for name in INTAKE_TABLES}


def rows(engine: sa.Engine, sql: str, **params) -> list[dict]:
    """Rows of a read query with bound parameters, as dicts."""
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.text(sql), params)]


def enroll_in_subprocess(database_url: str, data_dir: str, email: str, barrier, results) -> None:
    """Child-process body for the cross-process race: own services, wait at the barrier, enroll."""
    from core.bootstrap import build_services
    from core.intake import enroll_now
    from core.settings import Settings

    services = build_services(Settings(_env_file=None, database_url=database_url, data_dir=data_dir))
    try:
        request = signup_request(email=email, source="process")
        with services.engine.connect():  # open the connection before the start line
            pass
        barrier.wait(timeout=30)
        [result] = enroll_now(services, [request])
        results.put((result.outcome.value, result.enrollment_id, result.duplicate))
    except Exception as exc:  # the parent asserts on what arrives in the queue
        results.put(("error", repr(exc), None))
    finally:
        services.close()


class SendStatusLog:
    """Records every change of a send's status in the test database (a trigger into a side table),
    so a test can check each one against the state machine in core/statuses.py."""

    TABLE = "test_send_status_log"

    def __init__(self, engine: sa.Engine):
        self.engine = engine
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE TABLE {self.TABLE} (old_status VARCHAR(20), new_status VARCHAR(20))")
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql(
                    f"CREATE FUNCTION {self.TABLE}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    f"INSERT INTO {self.TABLE} VALUES (OLD.status, NEW.status); RETURN NULL; END $$")
                conn.exec_driver_sql(
                    f"CREATE TRIGGER {self.TABLE} AFTER UPDATE OF status ON send FOR EACH ROW "
                    f"WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION {self.TABLE}()")
            else:
                conn.exec_driver_sql(
                    f"CREATE TRIGGER {self.TABLE} AFTER UPDATE OF status ON send "
                    f"WHEN OLD.status IS NOT NEW.status "
                    f"BEGIN INSERT INTO {self.TABLE} VALUES (OLD.status, NEW.status); END")

    def transitions(self) -> set[tuple[str, str]]:
        with self.engine.connect() as conn:
            return {tuple(row) for row in conn.exec_driver_sql(f"SELECT old_status, new_status FROM {self.TABLE}")}

    def assert_allowed(self) -> set[tuple[str, str]]:
        seen = self.transitions()
        illegal = sorted(t for t in seen if not can_transition(SendStatus(t[0]), SendStatus(t[1])))
        assert not illegal, f"send status changes outside core.statuses.SEND_TRANSITIONS: {illegal}"
        return seen


# ---------------------------------------------------------------- Resend's signed events

WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"nurture-test-webhook-secret-0123").decode()


def signed(event: dict | list | None, *, msg_id: str | None = None, at: datetime | None = None,
           secret: str = WEBHOOK_SECRET, raw: str | None = None, header_family: str = "svix") -> dict:
    """A webhook request as Resend (through Svix) would send it: `event` as JSON, or the `raw` body.

    `header_family`: Svix signs under svix-id/svix-timestamp/svix-signature or the webhook-… names."""
    body = raw if raw is not None else json.dumps(event)
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    at = at or datetime.now(UTC)
    headers = {f"{header_family}-id": msg_id, f"{header_family}-timestamp": str(int(at.timestamp())),
               f"{header_family}-signature": Webhook(secret).sign(msg_id, at, body), "content-type": "application/json"}
    return {"content": body.encode(), "headers": headers}


# ---------------------------------------------------------------- the tally against a recount

def counted(conn: sa.Connection) -> dict:
    """What the tally should say, counted the slow way."""
    by_status_step = {(s, step): n for s, step, n in conn.execute(sa.text(
        "SELECT status, step, count(*) FROM send GROUP BY status, step"))}
    stages = {}
    for stage in tally.STAGES:
        stages.update({(stage, step): n for step, n in conn.execute(sa.text(
            f"SELECT step, count(*) FROM send WHERE {stage}_at IS NOT NULL GROUP BY step"))})  # fixed names
    segments = dict(conn.execute(sa.text("SELECT segment, count(*) FROM enrollment GROUP BY segment")).all())
    days: dict = {}
    for segment, created_at in conn.execute(sa.text("SELECT segment, created_at FROM enrollment")):
        if isinstance(created_at, str):  # SQLite hands back text
            created_at = datetime.fromisoformat(created_at).replace(tzinfo=UTC)
        key = (created_at.astimezone(UTC).date(), segment)
        days[key] = days.get(key, 0) + 1
    return {"status_step": by_status_step, "stages": stages, "segments": segments, "days": days}


def tallied(conn: sa.Connection) -> dict:
    return {"status_step": tally.sends_by_status_step(conn), "stages": tally.stages_by_step(conn),
            "segments": tally.signups_by_segment(conn),
            "days": tally.signups_by_day(conn, date(2000, 1, 1), date(2100, 1, 1))}
