"""Engine construction and migrations. Nothing here runs at import time."""

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine, make_url

from core import output_files
from core.errors import ConfigError, DatabaseTooNew

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).with_name("migrations")
# How long a statement waits for a lock before giving up: SQLite's busy_timeout, and the same
# lock_timeout on PostgreSQL, where a lock held elsewhere would otherwise be waited on forever
# (the webhook would hang instead of answering 503).
LOCK_WAIT_MS = 30_000
# libpq's defaults wait on a server that stopped answering (a network partition, a NAT that forgot the
# connection) for the kernel's 15 minutes of retransmissions, or 2 hours of idle keepalive: the intake
# writer and every worker job stalled that long. These notice within about a minute; a DATABASE_URL that
# names one of them keeps its own value (?connect_timeout=30).
POSTGRESQL_CONNECTION = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
                         "keepalives_count": 3, "tcp_user_timeout": 60_000}


def create_db_engine(url: str, *, pool_size: int = 5) -> Engine:
    """Build the engine; SQLite gets WAL, a busy timeout and synchronous=NORMAL on every connection.

    hide_parameters: a driver error's text (logged with its traceback) would otherwise quote the
    statement's values, a signup's address, names and payload among them, where `forget` cannot reach.
    """
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            folder = Path(path).parent
            try:
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)  # the database's folder: its owner's alone
            except OSError as exc:
                reason = (output_files.broken_link(folder) or "it is a file, not a folder"
                          if isinstance(exc, FileExistsError) else exc.strerror or exc)
                raise ConfigError(
                    f"DATABASE_URL names a SQLite file in {folder}, which cannot be used: {reason}.") from None
        engine = sa.create_engine(url, connect_args={"timeout": LOCK_WAIT_MS / 1000, "check_same_thread": False},
                                  hide_parameters=True)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    given = make_url(url).query
    engine = sa.create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
                              hide_parameters=True,
                              connect_args={k: v for k, v in POSTGRESQL_CONNECTION.items() if k not in given})
    sa.event.listen(engine, "connect", _postgresql_lock_timeout)
    return engine


def missing_sqlite_file(url: str) -> Path | None:
    """The SQLite file a URL names, when it does not exist (None for PostgreSQL or an existing file)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    path = sqlite_path(url)
    return None if path.exists() else path


def sqlite_path(url: str) -> Path:
    """The absolute path of the file a SQLite URL names."""
    return Path(make_url(url).database).resolve()


def cannot_open(exc: BaseException) -> bool:
    """SQLite could not open (or create) the database file: permissions, or a path it cannot use."""
    return _sqlite_code(exc) == sqlite3.SQLITE_CANTOPEN


def _sqlite_code(exc: BaseException) -> int | None:
    """SQLite's primary result code of a driver error (None for PostgreSQL's). sqlite3's sqlite_errorcode is
    the extended code (SQLITE_BUSY_SNAPSHOT is 517, SQLITE_BUSY 5), whose low byte is the primary one."""
    code = getattr(getattr(exc, "orig", None), "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def _postgresql_lock_timeout(dbapi_conn, _record) -> None:
    # A session setting: it outlives each transaction and the pool's reset-on-return.
    with dbapi_conn.cursor() as cur:
        cur.execute(f"SET lock_timeout = {LOCK_WAIT_MS}")
    dbapi_conn.commit()


def _sqlite_begin(conn) -> None:
    # Writers take the lock up front (BEGIN IMMEDIATE): a deferred transaction that later
    # upgrades to a writer can fail at once with "database is locked", busy_timeout or not.
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")


def storage_unavailable(exc: BaseException) -> bool:
    """The database itself failed (unreachable, restarting, locked past the lock wait, refusing writes),
    not the work asked of it: waiting and trying again is the cure, and every caller sees the same outage."""
    orig = getattr(exc, "orig", None)
    # A database that only reads (a failover onto a standby, a host that turned on default_transaction_read_only
    # as its disk filled): PostgreSQL's 25006, which psycopg raises as an InternalError.
    if getattr(orig, "sqlstate", None) == "25006":
        return True
    # sqlite3 raises SQL errors (no such table or column, a syntax error: SQLITE_ERROR) as OperationalError,
    # as it does a locked or full database; retrying a bug would only hide it.
    if _sqlite_code(exc) == sqlite3.SQLITE_ERROR:
        return False
    return isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError))


def not_a_database(exc: BaseException) -> bool:
    """The SQLite file is not a database, or no longer reads as one: no retry will help."""
    return _sqlite_code(exc) in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT)


def held_by_another(exc: BaseException) -> bool:
    """The database answered but another process held the lock past LOCK_WAIT_MS: busy, not down."""
    orig = getattr(exc, "orig", None)
    return (getattr(orig, "sqlstate", None) == "55P03"  # PostgreSQL's lock_timeout
            or _sqlite_code(exc) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED))


# SQLSTATEs of a transaction PostgreSQL rolled back because it crossed a concurrent one (a deadlock,
# a serialization failure): nothing of it was kept, and running it again is the documented cure.
_CROSSED = frozenset({"40P01", "40001"})


def crossed_a_concurrent_transaction(exc: BaseException) -> bool:
    """The transaction was rolled back only for having crossed another; it can simply run again."""
    return getattr(getattr(exc, "orig", None), "sqlstate", None) in _CROSSED


@contextmanager
def write_transaction(engine: Engine) -> Iterator[sa.Connection]:
    """A transaction that will write: on SQLite it holds the write lock from its first statement."""
    with engine.connect() as conn:
        conn = conn.execution_options(write=True)
        with conn.begin():
            yield conn


@contextmanager
def read_transaction(engine: Engine) -> Iterator[sa.Connection]:
    """A read-only snapshot transaction."""
    with engine.connect() as conn, conn.begin():
        yield conn


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    dbapi_conn.isolation_level = None  # autocommit at the driver; SQLAlchemy's begin hook opens txns
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={LOCK_WAIT_MS}")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
    # SQLite's LIKE and lower() fold ASCII letters only; the Signups search folds the rest with this.
    dbapi_conn.create_function(SQLITE_CASEFOLD, 1, _casefold, deterministic=True)


SQLITE_CASEFOLD = "nurture_casefold"


def _casefold(text: str | None) -> str | None:
    return text.casefold() if isinstance(text, str) else text


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine) -> bool:
    """Apply every pending migration to the engine's database; True if there were any.

    Every command and process calls this at start. A database already at the latest revision
    is only read, so `stats` or `export` neither queue behind the intake's writer for a write
    lock nor fail on a database they may only read (a read-only file or role).
    """
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with read_transaction(engine) as conn:
        _refuse_unknown_revisions(conn, cfg)
        _refuse_a_foreign_database(conn)
        if _at_head(conn, cfg):
            return False
    # A write transaction from the start: two processes migrating one SQLite file at once
    # then queue on the lock instead of failing to upgrade a read lock ("database is locked").
    with write_transaction(engine) as conn:
        _hold_the_migration_lock(conn)
        _refuse_unknown_revisions(conn, cfg)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    log.info("database migrated", extra={"action": "migrate"})
    return True


# Any fixed number: the key of PostgreSQL's advisory lock that migrations take.
MIGRATION_LOCK_KEY = 0x6E757274


def _hold_the_migration_lock(conn: sa.Connection) -> None:
    # PostgreSQL takes no lock up front as SQLite's BEGIN IMMEDIATE does: two processes starting on a
    # new database (the worker and the dashboard, under systemd) would both create the tables, and the
    # second fail. This one waits for the first to commit, then finds the database at its head.
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))


def _at_head(conn: sa.Connection, cfg: Config) -> bool:
    current = set(MigrationContext.configure(conn).get_current_heads())
    return current == set(ScriptDirectory.from_config(cfg).get_heads())


def _refuse_unknown_revisions(conn: sa.Connection, cfg: Config) -> None:
    # Alembic would stop with a "Can't locate revision" traceback; say what happened instead.
    known = {script.revision for script in ScriptDirectory.from_config(cfg).walk_revisions()}
    for revision in MigrationContext.configure(conn).get_current_heads():
        if revision not in known:
            raise DatabaseTooNew(f"The database at DATABASE_URL was migrated by a newer version of Nurture "
                                 f"(revision {revision!r} is unknown to this one), so run that version or newer, "
                                 f"or restore a backup from before the upgrade.")


def _refuse_a_foreign_database(conn: sa.Connection) -> None:
    # Tables but no alembic_version: DATABASE_URL names another application's database, in which
    # migrating would install Nurture's tables (Nurture's own first migration creates both at once).
    if MigrationContext.configure(conn).get_current_heads():
        return
    if tables := sorted(sa.inspect(conn).get_table_names()):
        raise ConfigError(f"The database at DATABASE_URL holds tables ({', '.join(tables[:5])}) but no record of "
                          f"Nurture's migrations (alembic_version), so it is left alone: point DATABASE_URL at "
                          f"Nurture's own database, or at a new, empty one.")


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        try:
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        except sa.exc.DatabaseError:
            return None
