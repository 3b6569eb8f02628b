"""A database outage in a worker job logs one line when it starts and one when it ends; other failures keep their traceback."""

import logging
import sqlite3

import pytest
import sqlalchemy as sa

from core.db import create_db_engine, held_by_another
from core.db_outages import WriteFailures, guarded


def unreachable() -> sa.exc.OperationalError:
    reason = Exception('connection to server at "db" (10.0.0.5), port 5432 failed: Connection refused\n\tIs it running?')
    return sa.exc.OperationalError("SELECT 1", {}, reason)


class FlakyJob:
    """A job whose database fails for the next `outage` runs (an OperationalError, or what `error` says)."""

    def __init__(self, outage: int, error: Exception | None = None):
        self.remaining, self.error, self.runs = outage, error or unreachable(), 0
        self.__name__ = "dispatch"

    def __call__(self) -> None:
        self.runs += 1
        if self.remaining:
            self.remaining -= 1
            raise self.error


def shown(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.INFO]


def test_a_database_outage_logs_one_line_when_it_starts_and_one_when_it_ends(caplog):
    caplog.set_level(logging.INFO)
    job = FlakyJob(outage=50)
    dispatch = guarded(job)

    for _ in range(51):
        dispatch()  # never raises: APScheduler must not log its own traceback as well

    started, ended = shown(caplog)
    assert job.runs == 51
    assert started.levelname == "WARNING" and started.exc_info is None
    assert started.getMessage() == ("dispatch: the database is unavailable, retrying quietly until it answers: "
                                    'connection to server at "db" (10.0.0.5), port 5432 failed: Connection refused')
    assert ended.levelname == "INFO" and ended.getMessage().startswith("dispatch: the database answers again, after ")
    assert started.action == ended.action == "dispatch"


def test_a_second_outage_is_reported_again(caplog):
    caplog.set_level(logging.INFO)
    job = FlakyJob(outage=2)
    dispatch = guarded(job)
    for _ in range(3):
        dispatch()
    job.remaining = 2
    for _ in range(3):
        dispatch()

    assert [r.levelname for r in shown(caplog)] == ["WARNING", "INFO", "WARNING", "INFO"]


def test_each_failed_run_of_an_outage_keeps_its_traceback_at_debug(caplog):
    caplog.set_level(logging.DEBUG, logger="core.db_outages")
    dispatch = guarded(FlakyJob(outage=3, error=sa.exc.InterfaceError("SELECT 1", {}, Exception("closed"))))

    for _ in range(3):
        dispatch()

    quiet = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(quiet) == 3 and all(r.exc_info for r in quiet)


def test_a_failure_other_than_the_database_is_logged_each_time_with_its_traceback(caplog):
    dispatch = guarded(FlakyJob(outage=2, error=ValueError("a bug")))

    dispatch()
    dispatch()
    dispatch()

    failures = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.levelname, r.getMessage()) for r in failures] == [("ERROR", "dispatch failed")] * 2
    assert all(r.exc_info and r.exc_info[0] is ValueError for r in failures)


def test_the_guarded_job_keeps_its_name_for_the_scheduler():
    assert guarded(FlakyJob(outage=0)).__name__ == "dispatch"


@pytest.mark.parametrize("error", [sa.exc.IntegrityError("INSERT", {}, Exception("duplicate")),
                                   sa.exc.ProgrammingError("SELECT", {}, Exception('relation "send" does not exist'))])
def test_a_statement_the_database_refuses_is_a_bug_not_an_outage(caplog, error):
    guarded(FlakyJob(outage=1, error=error))()

    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.levelname == "ERROR" and record.exc_info


def test_a_job_failing_for_want_of_the_database_is_reported_for_health_until_it_works():
    failures = WriteFailures()
    job = FlakyJob(outage=2)
    dispatch = guarded(job, failures=failures)

    dispatch()
    assert failures.current() == {"dispatch": 'connection to server at "db" (10.0.0.5), port 5432 failed: Connection refused'}
    dispatch()
    dispatch()  # the database answers again
    assert failures.current() == {}


def test_a_job_failing_for_another_reason_is_not_a_database_failure(caplog):
    failures = WriteFailures()
    guarded(FlakyJob(outage=1, error=ValueError("a bug")), failures=failures)()
    assert failures.current() == {}


def test_a_database_error_logged_with_its_traceback_does_not_quote_the_values_it_was_given(tmp_path):
    engine = create_db_engine(f"sqlite:///{tmp_path}/nurture.db")
    with pytest.raises(sa.exc.IntegrityError) as failed, engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE contact (email TEXT UNIQUE)"))
        for _ in range(2):
            conn.execute(sa.text("INSERT INTO contact VALUES (:email)"), {"email": "jo@example.com"})
    engine.dispose()
    assert "UNIQUE constraint failed" in str(failed.value) and "jo@example.com" not in str(failed.value)


def test_a_sqlite_lock_held_past_the_wait_is_told_apart_from_a_database_that_is_down(tmp_path):
    path = str(tmp_path / "locked.db")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    waiter = sqlite3.connect(path, timeout=0.05, isolation_level=None)
    try:
        waiter.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        busy = sa.exc.OperationalError("BEGIN IMMEDIATE", {}, exc)
    finally:
        holder.close()
        waiter.close()
    assert held_by_another(busy)
    gone = sa.exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError("unable to open database file"))
    assert not held_by_another(gone)


def test_a_sqlite_lock_reported_with_an_extended_code_is_still_held_by_another(tmp_path):
    # sqlite3's sqlite_errorcode is the extended code: a snapshot another writer overtook is SQLITE_BUSY_SNAPSHOT
    # (517), not SQLITE_BUSY (5).
    path = str(tmp_path / "overtaken.db")
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("PRAGMA journal_mode=WAL")
    reader.execute("CREATE TABLE t (x INTEGER)")
    reader.execute("BEGIN")
    reader.execute("SELECT * FROM t").fetchall()
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("INSERT INTO t VALUES (1)")
    try:
        reader.execute("INSERT INTO t VALUES (2)")
    except sqlite3.OperationalError as exc:
        overtaken = sa.exc.OperationalError("INSERT", {}, exc)
    finally:
        reader.close()
        writer.close()
    assert overtaken.orig.sqlite_errorcode == sqlite3.SQLITE_BUSY_SNAPSHOT
    assert held_by_another(overtaken)
