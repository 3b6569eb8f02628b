"""`python -m core backup`: an online SQLite backup, or the pg_dump line for PostgreSQL."""

import shlex
import sqlite3
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import make_url


def backup_sqlite(database_url: str, target_dir: Path, now: datetime) -> Path:
    """Copy a live SQLite database page by page (safe while the worker writes)."""
    source_path = make_url(database_url).database
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f"nurture-{now:%Y%m%d-%H%M%S}.db"
    with sqlite3.connect(source_path) as source, sqlite3.connect(target) as dest:
        source.backup(dest)
    source.close()
    dest.close()
    return target


def pg_dump_command(database_url: str, now: datetime) -> str:
    """The pg_dump line for this database; the password is left to PGPASSWORD or ~/.pgpass."""
    url = make_url(database_url)
    parts = ["pg_dump", "--format=custom", f"--file=nurture-{now:%Y%m%d-%H%M%S}.dump"]
    if url.host:
        parts.append(f"--host={url.host}")
    if url.port:
        parts.append(f"--port={url.port}")
    if url.username:
        parts.append(f"--username={url.username}")
    parts.append(url.database or "")
    return " ".join(shlex.quote(p) for p in parts)
