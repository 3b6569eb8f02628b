"""The real drivers' errors, told apart as core/db.py says: an outage the jobs wait out, or a bug they report."""

import logging

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

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


@pytest.mark.postgres
def test_a_postgresql_database_that_only_reads_is_an_outage_not_a_bug(pg_migrated_copy, caplog):
    # A failover onto a standby, or a host that sets default_transaction_read_only when the disk fills:
    # PostgreSQL answers 25006, which psycopg raises as an InternalError, not an OperationalError.
    name = make_url(pg_migrated_copy).database
    admin = sa.create_engine(pg_migrated_copy, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    admin.dispose()
    engine = db.create_db_engine(pg_migrated_copy)
    try:
        failures = _run_guarded(engine, "UPDATE setting SET value = value")
        with pytest.raises(sa.exc.DBAPIError) as refused, db.write_transaction(engine) as conn:
            conn.exec_driver_sql("UPDATE setting SET value = value")
    finally:
        engine.dispose()

    assert refused.value.orig.sqlstate == "25006"
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.levelname == "WARNING" and not record.exc_info
    assert "read-only transaction" in record.getMessage()
    assert "read-only transaction" in failures.current()["dispatch"]


@pytest.mark.postgres
def test_a_postgresql_server_that_stops_answering_is_noticed_within_a_minute_unless_the_url_says_otherwise(pg_url):
    # libpq's defaults would wait out the kernel's 15 minutes of retransmissions (or 2 h of idle keepalive).
    own_timeout = make_url(pg_url).update_query_dict({"connect_timeout": "3"}).render_as_string(hide_password=False)
    for url, connect_timeout in ((pg_url, "10"), (own_timeout, "3")):
        engine = db.create_db_engine(url)
        try:
            with engine.connect() as conn:
                used = conn.connection.driver_connection.info.get_parameters()
        finally:
            engine.dispose()
        assert used["connect_timeout"] == connect_timeout
        assert (used["keepalives_idle"], used["keepalives_count"], used["tcp_user_timeout"]) == ("30", "3", "60000")
