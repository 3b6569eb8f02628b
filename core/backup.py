"""`python -m core backup`: an online SQLite backup, or the pg_dump line for PostgreSQL."""

import os
import shlex
import sqlite3
import tempfile
from contextlib import closing
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from core import switches
from core.errors import ConfigError, NurtureError
from core.output_files import PRIVATE, broken_link


def backup_sqlite(database_url: str, target_dir: Path, now: datetime) -> Path:
    """Copy a live SQLite database page by page (safe while the worker writes).

    The copy is made under a temporary name and renamed when complete, so a failed backup
    (disk full, folder unwritable) never leaves a file that looks like a good one. The copy has
    sending paused (see `_pause_copy`); the database it was taken from is left as it was.
    """
    source_path = make_url(database_url).database
    if source_path in (None, "", ":memory:"):
        raise ConfigError("DATABASE_URL names an in-memory SQLite database: there is no file to back up")
    if target_dir.exists() and not target_dir.is_dir():
        raise NurtureError(f"cannot back up into {target_dir}: it is a file, not a folder")
    if reason := broken_link(target_dir):  # mkdir would say only "File exists"
        raise NurtureError(f"cannot back up into {target_dir}: {reason}")
    target = _unused_name(target_dir, f"nurture-{now:%Y%m%d-%H%M%S}")
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=target_dir, prefix=".nurture-", suffix=".partial")
        os.fchmod(fd, PRIVATE)  # a copy of every contact: readable by its owner only, whatever the umask
        os.close(fd)
    except OSError as exc:
        exc.filename, exc.filename2 = str(target_dir), None  # the folder asked for, not our temporary file
        raise
    try:
        with closing(sqlite3.connect(source_path)) as source, closing(sqlite3.connect(partial)) as dest:
            source.backup(dest)
        _pause_copy(partial, now)
        os.replace(partial, target)
    except (sqlite3.Error, sa.exc.DBAPIError) as exc:  # the driver names no file: say which backup failed
        raise NurtureError(f"backup to {target} failed: {exc}") from None
    finally:
        Path(partial).unlink(missing_ok=True)
    return target


def _pause_copy(path: str, taken_at: datetime) -> None:
    """Pause sending in a backup copy, so a restored one waits for a person before sending.

    Emails sent after the backup are not recorded in it: restored and run as it is, the worker
    would send them again under fresh idempotency keys, which Resend cannot recognise.
    """
    engine = sa.create_engine(f"sqlite:///{path}", poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            if not sa.inspect(conn).has_table("setting"):  # not a Nurture database: copied as it is
                return
            switches.set_paused(conn, True, actor="backup", now=taken_at, reason=restored_reason(taken_at))
    finally:
        engine.dispose()


def restored_reason(taken_at: datetime) -> str:
    """The pause reason a restored backup shows in the dashboard and `/health`."""
    return (f"restored from the backup of {taken_at:%Y-%m-%d %H:%M} UTC: emails sent after that are not "
            "recorded here and would go again; skip them (Resend's log lists them), then resume")


def _unused_name(folder: Path, stem: str) -> Path:
    """`stem`.db, or `stem`-2.db and so on: a second backup within the same second keeps the first."""
    target, n = folder / f"{stem}.db", 2
    while target.exists():
        target, n = folder / f"{stem}-{n}.db", n + 1
    return target


def pg_dump_command(database_url: str, now: datetime) -> str:
    """The pg_dump line for this database; the password is left to PGPASSWORD or ~/.pgpass."""
    url = make_url(database_url)
    parts = ["pg_dump", "--format=custom", f"--file=nurture-{now:%Y%m%d-%H%M%S}.dump"]
    host = url.host or url.query.get("host")  # libpq also takes the host (or a socket folder) as ?host=
    if host:
        parts.append(f"--host={host}")
    if url.port:
        parts.append(f"--port={url.port}")
    if url.username:
        parts.append(f"--username={url.username}")
    parts.append(url.database or "")
    return " ".join(shlex.quote(p) for p in parts)
