"""Shared fixtures: both storage backends, settings isolated from the environment, services and a client.

PostgreSQL: one database per test session (created from TEST_DATABASE_URL's server and dropped
at the end); a test starts from its empty `public` schema, or, when it uses `services`, from its own
copy of a database migrated once per session. When the server is unreachable the PostgreSQL tests
are skipped locally, and fail under CI (env CI set).

Fixtures: `backend` ("sqlite" | "postgres"), `database_url` (migrated if the test uses `services`, else empty), `make_settings(**overrides)`,
`clock` (a FrozenClock at 2025-12-01T09:00Z), `services` (migrated, on `clock`), `client` (TestClient with
the lifespan running) and `pg_url` (the session's PostgreSQL database). A test pins one backend with
`@pytest.mark.parametrize("backend", ["sqlite"])`.
"""

import os
import shutil
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from core import db
from core.bootstrap import build_services
from core.settings import Settings
from tests.support import FrozenClock, TestClient

DEFAULT_TEST_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
# Every variable Settings reads; cleared so a developer's shell never leaks into a test.
SETTINGS_ENV = [name.upper() for name in Settings.model_fields]


def _admin_engine(url: sa.URL) -> sa.Engine:
    return sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool,
                            connect_args={"connect_timeout": 5})


def _terminate(conn: sa.Connection, database: str) -> None:
    conn.execute(sa.text(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :db AND pid <> pg_backend_pid()"
    ), {"db": database})


@pytest.fixture(autouse=True)
def main_module_restored():
    """Streamlit's AppTest leaves the dashboard script as sys.modules["__main__"]. A later test that
    starts a process with multiprocessing's spawn would then run the dashboard in the child before
    its target, and the child can die there (a locked database) instead of doing the test's work."""
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main


@pytest.fixture(scope="session")
def pg_url():
    """URL of a PostgreSQL database made for this test session and dropped after it."""
    admin_url = make_url(os.environ.get("TEST_DATABASE_URL") or DEFAULT_TEST_DATABASE_URL)
    if admin_url.drivername == "postgresql":
        admin_url = admin_url.set(drivername="postgresql+psycopg")
    name = f"nurture_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = _admin_engine(admin_url)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')  # a name we made: identifiers cannot be bound
    except sa.exc.OperationalError as exc:
        admin.dispose()
        cause = " ".join(str(exc.orig).split())
        reason = f"PostgreSQL at {admin_url.render_as_string(hide_password=True)} is unreachable ({cause})"
        if os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}:
            pytest.fail(f"{reason} (CI is set, so PostgreSQL tests must run)", pytrace=False)
        pytest.skip(f"{reason}; set TEST_DATABASE_URL or start the server")
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            _terminate(conn, name)
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], ids=["sqlite", "postgres"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def database_url(request, backend, tmp_path) -> str:
    """The test's database: migrated when the test uses `services` (which would migrate it anyway),
    empty otherwise. A migrated one is a copy of one migrated once per session: migrating each
    test's own took most of a PostgreSQL test's time and a tenth of the suite's."""
    migrated = "services" in request.fixturenames
    if backend == "sqlite":
        path = tmp_path / "nurture.db"
        if migrated:
            shutil.copyfile(request.getfixturevalue("migrated_sqlite_file"), path)
        return f"sqlite:///{path}"
    if migrated:
        return request.getfixturevalue("pg_migrated_copy")
    url = request.getfixturevalue("pg_url")
    engine = _admin_engine(make_url(url))
    try:
        with engine.connect() as conn:
            _terminate(conn, engine.url.database)  # connections a crashed test leaked would block the drop
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="session")
def pg_migrated_template(pg_url) -> str:
    """Name of a PostgreSQL database migrated once per session. Nothing stays connected to it,
    as CREATE DATABASE … TEMPLATE requires."""
    url = make_url(pg_url)
    name = f"{url.database}_migrated"
    admin = _admin_engine(url)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')  # names we made: identifiers cannot be bound
        engine = db.create_db_engine(url.set(database=name).render_as_string(hide_password=False))
        try:
            db.upgrade(engine)
        finally:
            engine.dispose()
        yield name
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def pg_migrated_copy(pg_url, pg_migrated_template) -> str:
    """URL of this test's own copy of the migrated database, dropped after the test."""
    url = make_url(pg_url)
    name = f"{url.database}_{uuid.uuid4().hex[:8]}"
    admin = _admin_engine(url)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{pg_migrated_template}"')
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:  # FORCE: connections a test leaked would otherwise block the drop
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def make_settings(database_url, tmp_path, monkeypatch):
    """A factory of Settings on the test database, blind to the environment and to any .env file."""
    for name in SETTINGS_ENV:
        monkeypatch.delenv(name, raising=False)

    def make(**overrides) -> Settings:
        values = {"database_url": database_url, "data_dir": str(tmp_path), **overrides}
        return Settings(_env_file=None, **values)

    return make


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock("2025-12-01T09:00:00Z")


@pytest.fixture(scope="session")
def migrated_sqlite_file(tmp_path_factory) -> Path:
    """A SQLite file migrated once per session (switches not seeded: each test seeds its own)."""
    path = tmp_path_factory.mktemp("migrated") / "nurture.db"
    engine = db.create_db_engine(f"sqlite:///{path}")
    try:
        db.upgrade(engine)
        with engine.connect() as conn:  # everything into the main file, which is all a copy takes
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()
    return path


@pytest.fixture
def services(make_settings, clock):
    """Services on a migrated test database, reading time from `clock`."""
    built = build_services(make_settings(), migrate=True, clock=clock)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def client(services):
    """A TestClient on the intake API; the lifespan (and its writer thread) runs for the test."""
    from core.api import create_app

    with TestClient(create_app(services)) as test_client:
        yield test_client
