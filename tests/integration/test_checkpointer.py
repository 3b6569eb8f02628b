"""The background WAL checkpointer: committed signups reach the SQLite database file without
any commit copying them there, and a failing checkpoint never stops it."""

import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from core import checkpointer as checkpointer_module, db
from core.checkpointer import WalCheckpointer
from tests.support import TestClient, signup

URL = "/webhook/christmas-signup"


def rows_in_database_file_alone(database: Path, tmp_path: Path, table: str) -> int:
    """Count `table`'s rows in a copy of the main database file without its WAL: what is
    there has been checkpointed; what still sits only in the log is not. -1 while the copy
    has no such table yet (or caught a checkpoint halfway)."""
    copy = tmp_path / f"copy-{time.monotonic_ns()}.db"
    shutil.copyfile(database, copy)
    try:
        with sqlite3.connect(copy) as conn:
            return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    except sqlite3.DatabaseError:
        return -1


def wait_until(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


_EARLIER: set[int] = set()


@pytest.fixture(autouse=True)
def earlier_checkpointers_ignored():
    """Threads of an earlier test in this process are not this test's: a stop with its budget spent leaves
    its checkpointer to finish the last checkpoint on its own (core/intake.py), which can outlast that test."""
    _EARLIER.clear()
    _EARLIER.update(t.ident for t in threading.enumerate() if t.name == "wal-checkpointer")


def checkpointer_threads() -> list[threading.Thread]:
    """The checkpointer threads this test started that are still running."""
    return [t for t in threading.enumerate() if t.name == "wal-checkpointer" and t.ident not in _EARLIER]


@pytest.fixture
def sqlite_engine(tmp_path):
    engine = db.create_db_engine(f"sqlite:///{tmp_path}/wal.db")
    with db.write_transaction(engine) as conn:
        conn.exec_driver_sql("CREATE TABLE note (n INTEGER)")
    with engine.connect() as conn:  # start from an empty log: the table itself is in the file
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").all()
    yield engine
    engine.dispose()


def add_notes(engine, count: int) -> None:
    with db.write_transaction(engine) as conn:
        conn.exec_driver_sql("INSERT INTO note VALUES " + ", ".join(["(1)"] * count))


def test_a_nudge_copies_committed_rows_into_the_database_file(sqlite_engine, tmp_path):
    database = Path(sqlite_engine.url.database)
    checkpointer = WalCheckpointer(sqlite_engine)
    checkpointer.start()
    try:
        add_notes(sqlite_engine, 5)
        # Far below SQLite's own threshold: without a checkpoint the rows live only in the log.
        assert rows_in_database_file_alone(database, tmp_path, "note") == 0
        checkpointer.nudge()
        assert wait_until(lambda: rows_in_database_file_alone(database, tmp_path, "note") == 5)
        # The rows can be in the file a moment before the thread has counted its checkpoint.
        assert wait_until(lambda: checkpointer.checkpoints >= 1)
    finally:
        checkpointer.stop()


def test_without_a_nudge_nothing_is_copied_and_stop_runs_a_last_checkpoint(sqlite_engine, tmp_path):
    database = Path(sqlite_engine.url.database)
    checkpointer = WalCheckpointer(sqlite_engine)
    checkpointer.start()
    add_notes(sqlite_engine, 3)
    time.sleep(0.1)
    assert checkpointer.checkpoints == 0
    assert rows_in_database_file_alone(database, tmp_path, "note") == 0
    checkpointer.nudge()  # the commit's nudge may come just before shutdown
    checkpointer.stop()
    assert rows_in_database_file_alone(database, tmp_path, "note") == 3
    assert not checkpointer_threads()


def test_a_failing_checkpoint_is_logged_and_the_next_nudge_still_works(sqlite_engine, tmp_path, caplog, monkeypatch):
    class FailsOnce:
        """The engine, except that its first connection attempt fails (a disk hiccup)."""

        def __init__(self, engine):
            self.dialect, self.url, self._engine, self.failed = engine.dialect, engine.url, engine, False

        def connect(self):
            if not self.failed:
                self.failed = True
                raise sa.exc.OperationalError("PRAGMA wal_checkpoint", {}, Exception("disk I/O error"))
            return self._engine.connect()

    database = Path(sqlite_engine.url.database)
    engine = FailsOnce(sqlite_engine)
    checkpointer = WalCheckpointer(engine)
    monkeypatch.setattr(checkpointer_module, "RETRY_AFTER_FAILURE_SECONDS", 0.05)
    checkpointer.start()
    try:
        add_notes(sqlite_engine, 2)
        checkpointer.nudge()
        assert wait_until(lambda: engine.failed)
        add_notes(sqlite_engine, 2)
        time.sleep(0.1)
        checkpointer.nudge()
        assert wait_until(lambda: rows_in_database_file_alone(database, tmp_path, "note") == 4)
    finally:
        checkpointer.stop()
    assert "background WAL checkpoint failed" in caplog.text


def test_a_database_that_cannot_be_written_is_reported_once_without_a_traceback(sqlite_engine, caplog, monkeypatch):
    add_notes(sqlite_engine, 1)  # a log to copy
    read_only = sa.create_engine(f"sqlite:///file:{sqlite_engine.url.database}?mode=ro&uri=true")
    checkpointer = WalCheckpointer(read_only)
    checkpointer.enabled = True  # the URI form names the file too
    monkeypatch.setattr(checkpointer_module, "RETRY_AFTER_FAILURE_SECONDS", 0.01)
    checkpointer.start()
    try:
        for _ in range(3):
            checkpointer.nudge()
            time.sleep(0.1)
    finally:
        checkpointer.stop()  # the last checkpoint at stop fails too
        read_only.dispose()

    failures = [r for r in caplog.records if r.getMessage().startswith("background WAL checkpoint failed")]
    assert len(failures) == 1, [r.getMessage() for r in failures]
    assert not failures[0].exc_info, "the database's own trouble, not a bug: no traceback"
    assert checkpointer.checkpoints == 0


def test_only_a_sqlite_file_gets_a_checkpointer(tmp_path):
    memory = sa.create_engine("sqlite://")
    postgres = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/never_connected")
    for engine in (memory, postgres):
        checkpointer = WalCheckpointer(engine)
        checkpointer.start()
        checkpointer.nudge()
        assert not checkpointer.enabled
        assert not checkpointer_threads()
        checkpointer.stop()


def test_the_webhook_leaves_its_signups_in_the_database_file(services, tmp_path):
    from core.api import create_app

    if services.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL manages its own write-ahead log")
    database = Path(services.engine.url.database)
    with TestClient(create_app(services)) as client:
        assert len(checkpointer_threads()) == 1
        for i in range(3):
            assert client.post(URL, json=signup(email=f"wal{i}@example.com")).status_code == 202
        assert wait_until(lambda: rows_in_database_file_alone(database, tmp_path, "enrollment") == 3)
        assert rows_in_database_file_alone(database, tmp_path, "send") == 21
    assert not checkpointer_threads()
