"""Driver-level bulk statements (core.bulk) on SQLite and PostgreSQL: chunking, conflicts, counts, types."""

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from core import bulk, db
from core.bootstrap import build_services
from core.ids import new_id
from core.models import Contact

contact_t = Contact.__table__


@pytest.fixture
def services(make_settings):
    built = build_services(make_settings(), migrate=True)
    try:
        yield built
    finally:
        built.close()


def contact(email: str, at: datetime) -> dict:
    return {"id": new_id(), "email": email, "first_name": "Zoë", "business_name": None, "is_test": False,
            "created_at": at, "updated_at": at}


def _by_email(emails):
    return sa.select(contact_t.c.email, contact_t.c.first_name).where(contact_t.c.email.in_(emails))


def test_many_rows_go_in_chunks_and_conflicts_are_counted_out(services):
    at = datetime(2025, 12, 1, 9, 30, 15, 123456, tzinfo=UTC)
    first = [contact(f"bulk{i}@example.com", at + timedelta(seconds=i)) for i in range(600)]
    with db.write_transaction(services.engine) as conn:
        assert bulk.bulk_insert(conn, contact_t, first, ignore_conflicts=True) == 600
    # 300 of these addresses exist already: only the other 300 go in, and the count says so.
    again = [contact(f"bulk{i}@example.com", at) for i in range(300, 900)]
    with db.write_transaction(services.engine) as conn:
        assert bulk.bulk_insert(conn, contact_t, again, ignore_conflicts=True) == 300
        assert bulk.bulk_insert(conn, contact_t, [], ignore_conflicts=True) == 0
    with db.read_transaction(services.engine) as conn:
        stored = conn.execute(sa.select(contact_t.c.email, contact_t.c.created_at, contact_t.c.first_name)).all()
        found = dict(bulk.select_values(conn, _by_email, ["bulk5@example.com", "bulk899@example.com", "nobody@x.io"]))
    assert len(stored) == 900
    # Datetimes read back through the ORM type exactly as written, on both backends.
    assert {row.email: row.created_at for row in stored}["bulk5@example.com"] == at + timedelta(seconds=5)
    assert found == {"bulk5@example.com": "Zoë", "bulk899@example.com": "Zoë"}


def test_a_conflict_without_ignore_raises_and_the_transaction_stores_nothing(services):
    at = datetime(2025, 12, 1, tzinfo=UTC)
    with db.write_transaction(services.engine) as conn:
        bulk.bulk_insert(conn, contact_t, [contact("twice@example.com", at)])
    with pytest.raises(sa.exc.IntegrityError), db.write_transaction(services.engine) as conn:
        bulk.bulk_insert(conn, contact_t, [contact("new@example.com", at), contact("twice@example.com", at)])
    with db.read_transaction(services.engine) as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(contact_t)) == 1


def test_postgresql_plans_each_lookup_with_its_values_instead_of_keeping_a_prepared_plan(services):
    # psycopg prepares a statement after its fifth run, and PostgreSQL may then settle on a
    # generic plan made while the table was nearly empty: a sequential scan that the intake
    # measured growing with every signup. Lookups are therefore never prepared.
    if services.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no server-side prepared statements")
    at = datetime(2025, 12, 1, tzinfo=UTC)
    with db.write_transaction(services.engine) as conn:
        for i in range(12):
            bulk.bulk_insert(conn, contact_t, [contact(f"plan{i}@example.com", at)])  # inserts may be prepared
            assert dict(bulk.select_values(conn, _by_email, [f"plan{i}@example.com", "x@example.com"])) == {
                f"plan{i}@example.com": "Zoë"}
        prepared = conn.exec_driver_sql("SELECT statement FROM pg_prepared_statements").scalars().all()
    assert any(s.startswith("INSERT INTO contact") for s in prepared)
    assert not [s for s in prepared if s.lstrip().upper().startswith("SELECT")]


def _pipeline_on(conn: sa.Connection) -> bool:
    import psycopg

    return conn.connection.driver_connection.pgconn.pipeline_status != psycopg.pq.PipelineStatus.OFF


def test_pipelined_inserts_all_land_and_postgresql_sends_them_without_waiting(services):
    at = datetime(2025, 12, 1, tzinfo=UTC)
    postgresql = services.engine.dialect.name == "postgresql"
    with db.write_transaction(services.engine) as conn:
        with bulk.pipelined(conn):
            bulk.bulk_insert(conn, contact_t, [contact("pipe1@example.com", at)])
            bulk.bulk_insert(conn, contact_t, [contact(f"pipe{i}@example.com", at) for i in range(2, 6)])
            assert not postgresql or _pipeline_on(conn)
        assert not postgresql or not _pipeline_on(conn)
        # Back in ordinary mode, the same transaction reads what the pipeline wrote.
        found = dict(bulk.select_values(conn, _by_email, [f"pipe{i}@example.com" for i in range(1, 6)]))
    assert sorted(found) == [f"pipe{i}@example.com" for i in range(1, 6)]


def test_a_failure_inside_a_pipeline_raises_sqlalchemys_error_and_the_transaction_stores_nothing(services):
    at = datetime(2025, 12, 1, tzinfo=UTC)
    with db.write_transaction(services.engine) as conn:
        bulk.bulk_insert(conn, contact_t, [contact("kept@example.com", at)])
    with pytest.raises(sa.exc.IntegrityError), db.write_transaction(services.engine) as conn:
        with bulk.pipelined(conn):
            bulk.bulk_insert(conn, contact_t, [contact("lost@example.com", at)])
            bulk.bulk_insert(conn, contact_t, [contact("kept@example.com", at)])  # duplicate address
            bulk.bulk_insert(conn, contact_t, [contact("after@example.com", at)])
    with db.read_transaction(services.engine) as conn:
        emails = conn.execute(sa.select(contact_t.c.email)).scalars().all()
    assert emails == ["kept@example.com"]
    # The pooled connection is usable again afterwards.
    with db.write_transaction(services.engine) as conn:
        assert bulk.bulk_insert(conn, contact_t, [contact("next@example.com", at)]) == 1
