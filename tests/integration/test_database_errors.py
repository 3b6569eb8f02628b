"""The real drivers' errors, told apart as core/db.py says: an outage the jobs wait out, or a bug they report."""

import logging

import sqlalchemy as sa

from core import db
from core.db_outages import WriteFailures, guarded


def _run_guarded(engine: sa.Engine, statement: str) -> WriteFailures:
    failures = WriteFailures()

    def dispatch() -> None:
        with db.write_transaction(engine) as conn:
            conn.exec_driver_sql(statement)

    guarded(dispatch, failures=failures)()
    return failures


def test_a_statement_naming_a_table_that_is_not_there_is_a_bug_not_an_outage(database_url, caplog):
    # SQLite raises every SQL error (SQLITE_ERROR: no such table or column, a syntax error) as an
    # OperationalError, the class its outages share; PostgreSQL raises a ProgrammingError.
    engine = db.create_db_engine(database_url)
    try:
        failures = _run_guarded(engine, "UPDATE no_such_table SET x = 1")
    finally:
        engine.dispose()

    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.levelname == "ERROR" and record.exc_info, "a bug keeps its traceback"
    assert failures.current() == {}, "/health must not blame the database for a bug"

