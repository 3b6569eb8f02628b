"""Runtime switches kept in the setting table: global pause, test mode, and why they changed."""

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from core import repo
from core.bulk import select_rows
from core.tables import setting_t


PAUSED = "sending_paused"
PAUSE_REASON = "pause_reason"
TEST_MODE = "test_mode"
ERASURE_SALT = "erasure_salt"  # written once by core/erasure.py, read here with the switches
# Provider account errors in a row, across workers and runs: a `--once` run from cron makes a
# call or two and exits, so a count kept in memory would never reach the breaker's threshold.
ACCOUNT_ERRORS = "provider_account_errors"


@dataclass(frozen=True)
class Switches:
    paused: bool
    pause_reason: str | None
    test_mode: bool
    # Not a switch, but in the same table: an intake batch needs it too, and one query serves both.
    erasure_salt: str | None = None


def _all_settings() -> sa.Select:
    return sa.select(setting_t.c.key, setting_t.c.value)


def read(conn: sa.Connection) -> Switches:
    """All runtime switches (and the erasure salt) in one query; the dispatcher and every intake batch read them."""
    values = dict(select_rows(conn, _all_settings))
    return Switches(
        paused=values.get(PAUSED) == "true",
        pause_reason=values.get(PAUSE_REASON) or None,
        test_mode=values.get(TEST_MODE) == "true",
        erasure_salt=values.get(ERASURE_SALT) or None,
    )


def seed(conn: sa.Connection, *, test_mode: bool, now: datetime) -> None:
    """Store TESTING_MODE the first time only; afterwards the stored (dashboard) value wins."""
    repo.insert_ignoring_conflicts(conn, setting_t, [
        {"key": TEST_MODE, "value": _bool(test_mode), "updated_at": now, "updated_by": "TESTING_MODE"},
        {"key": PAUSED, "value": "false", "updated_at": now, "updated_by": "install"},
    ])


def is_seeded(conn: sa.Connection) -> bool:
    """Both switches are stored: seeding would change nothing, so it need not write."""
    stored = conn.execute(sa.select(sa.func.count()).select_from(setting_t)
                          .where(setting_t.c.key.in_([TEST_MODE, PAUSED]))).scalar_one()
    return stored == 2


def set_value(conn: sa.Connection, key: str, value: str, *, actor: str, now: datetime) -> None:
    row = {"key": key, "value": value, "updated_at": now, "updated_by": actor}
    updated = conn.execute(
        setting_t.update().where(setting_t.c.key == key).values(value=value, updated_at=now, updated_by=actor)
    ).rowcount
    if not updated:
        repo.insert_ignoring_conflicts(conn, setting_t, [row])


def set_paused(conn: sa.Connection, paused: bool, *, actor: str, now: datetime, reason: str | None = None) -> None:
    """Flip the global sending switch and record it in the audit trail."""
    # A reason is typed or pasted by a person: NUL, which PostgreSQL refuses in any text, is dropped from it.
    reason = reason.replace("\x00", "") if reason else reason
    set_value(conn, PAUSED, _bool(paused), actor=actor, now=now)
    set_value(conn, PAUSE_REASON, reason or "", actor=actor, now=now)
    kind = "sending_paused" if paused else "sending_resumed"
    repo.insert_events(conn, [repo.event_row(now, actor, kind, detail={"reason": reason} if reason else None)])


def paused_since(conn: sa.Connection) -> datetime | None:
    """When sending was paused, if it is: what tells one pause from the next, reason or none."""
    return conn.scalar(sa.select(setting_t.c.updated_at).where(setting_t.c.key == PAUSED, setting_t.c.value == "true"))


def resume_seen(conn: sa.Connection, seen: datetime | None, *, actor: str, now: datetime) -> str | None:
    """Lift the pause a marketer saw (`seen`: its paused_since); None once resumed, else why not, in words.

    A page drawn before a newer pause (the circuit breaker's, a colleague's) must not lift that one unseen:
    its reason may be the very thing to read first. Told apart by time, as two pauses may give one reason.
    """
    state = _locked(conn)
    if not state.paused:
        return "Sending was already resumed."
    if paused_since(conn) != seen:
        return (f"Sending was paused again after this page was drawn ({state.pause_reason or 'no reason given'}), "
                "so it stays paused: read the reason on Settings, then resume if you still want to.")
    set_paused(conn, False, actor=actor, now=now)
    return None


def pause_unless_paused(conn: sa.Connection, reason: str | None, *, actor: str, now: datetime) -> str | None:
    """Pause sending; None once paused, else why not. A pause already in place keeps its own reason (the
    circuit breaker's, say): a page drawn before it would otherwise write over it."""
    state = _locked(conn)
    if state.paused:
        return (f"Sending was already paused ({state.pause_reason or 'no reason given'}); that pause and its "
                "reason stand.")
    set_paused(conn, True, actor=actor, now=now, reason=reason)
    return None


def _locked(conn: sa.Connection) -> Switches:
    """The switches, with the pause switch locked until the transaction ends (PostgreSQL; a SQLite write
    transaction holds the whole database already): no pause can land between this read and the write after it."""
    conn.execute(sa.select(setting_t.c.value).where(setting_t.c.key == PAUSED).with_for_update())
    return read(conn)


def set_test_mode(conn: sa.Connection, enabled: bool, *, actor: str, now: datetime) -> None:
    set_value(conn, TEST_MODE, _bool(enabled), actor=actor, now=now)
    repo.insert_events(conn, [repo.event_row(now, actor, "test_mode_on" if enabled else "test_mode_off")])


def _bool(value: bool) -> str:
    return "true" if value else "false"


def count_account_error(conn: sa.Connection, *, actor: str, now: datetime) -> int:
    """One more provider account error in a row; returns how many there now are."""
    bump = (setting_t.update().where(setting_t.c.key == ACCOUNT_ERRORS)
            .values(value=sa.cast(sa.cast(setting_t.c.value, sa.Integer) + 1, sa.String), updated_at=now,
                    updated_by=actor)
            .returning(setting_t.c.value))
    counted = conn.execute(bump).scalar()
    if counted is None:
        first = {"key": ACCOUNT_ERRORS, "value": "1", "updated_at": now, "updated_by": actor}
        if repo.insert_ignoring_conflicts(conn, setting_t, [first]):
            return 1
        counted = conn.execute(bump).scalar()  # another worker stored the first one meanwhile
    return int(counted)


def clear_account_errors(conn: sa.Connection, *, actor: str, now: datetime) -> None:
    """A provider call went through (or the breaker tripped): the next account error starts a new run."""
    conn.execute(setting_t.update().where(setting_t.c.key == ACCOUNT_ERRORS, setting_t.c.value != "0")
                 .values(value="0", updated_at=now, updated_by=actor))
