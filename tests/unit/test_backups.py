"""backup_sqlite refuses what it cannot back up and never leaves a file that looks like a good backup."""

import os
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from core import db, switches
from core.backup import backup_sqlite, pg_dump_command
from core.errors import ConfigError, NurtureError

NOW = datetime(2025, 12, 1, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_database_has_nothing_to_back_up(url, tmp_path):
    with pytest.raises(ConfigError, match="in-memory"):
        backup_sqlite(url, tmp_path, NOW)


def test_a_file_where_the_folder_should_be_is_named(tmp_path):
    (tmp_path / "backups").write_text("")
    with pytest.raises(NurtureError, match="it is a file, not a folder"):
        backup_sqlite(f"sqlite:///{tmp_path}/nurture.db", tmp_path / "backups", NOW)


def test_a_backup_folder_linked_to_nothing_is_named_as_such(tmp_path):
    (tmp_path / "backups").symlink_to(tmp_path / "unmounted")
    with pytest.raises(NurtureError, match=f"it is a link to {tmp_path / 'unmounted'}, which does not exist"):
        backup_sqlite(f"sqlite:///{tmp_path}/nurture.db", tmp_path / "backups", NOW)


def test_a_failed_backup_leaves_nothing_in_the_folder(tmp_path):
    (tmp_path / "nurture.db").write_text("not a database")
    with pytest.raises(NurtureError, match="backup to .* failed"):
        backup_sqlite(f"sqlite:///{tmp_path}/nurture.db", tmp_path / "backups", NOW)
    assert os.listdir(tmp_path / "backups") == []


def test_an_unwritable_folder_is_an_os_error_naming_the_folder():
    with pytest.raises(OSError) as failed:
        backup_sqlite("sqlite:////nonexistent/nurture.db", Path("/proc/backups"), NOW)
    assert failed.value.filename == "/proc/backups"


def test_two_backups_in_the_same_second_are_both_kept(tmp_path):
    with closing(sqlite3.connect(tmp_path / "nurture.db")) as conn:
        conn.execute("CREATE TABLE t (x)")
    first = backup_sqlite(f"sqlite:///{tmp_path}/nurture.db", tmp_path / "backups", NOW)
    second = backup_sqlite(f"sqlite:///{tmp_path}/nurture.db", tmp_path / "backups", NOW)
    assert (first.name, second.name) == ("nurture-20251201-090000.db", "nurture-20251201-090000-2.db")


@pytest.mark.parametrize(("url", "host"), [
    ("postgresql+psycopg://nurture@db.internal:5433/nurture", "--host=db.internal"),
    ("postgresql+psycopg://nurture@/nurture?host=127.0.0.1", "--host=127.0.0.1"),
    ("postgresql+psycopg://nurture@/nurture?host=/var/run/postgresql", "--host=/var/run/postgresql"),
])
def test_the_pg_dump_line_names_the_server_however_the_url_gives_it(url, host):
    assert host in pg_dump_command(url, NOW).split()


def test_a_backup_is_readable_by_its_owner_only_whatever_the_umask(tmp_path):
    url = f"sqlite:///{tmp_path}/nurture.db"
    with closing(sqlite3.connect(tmp_path / "nurture.db")) as conn:
        conn.execute("create table contact (email text)")
    old = os.umask(0o022)
    try:
        copy = backup_sqlite(url, tmp_path / "backups", NOW)
    finally:
        os.umask(old)
    assert copy.stat().st_mode & 0o777 == 0o600


def test_a_restored_backup_sends_nothing_until_a_person_resumes_it(tmp_path):
    """Emails sent after the backup are not in it: run as it is, the worker would send them again."""
    url = f"sqlite:///{tmp_path}/nurture.db"
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    command.upgrade(db.alembic_config(url), "head")
    with engine.begin() as conn:
        switches.seed(conn, test_mode=False, now=NOW)

    copy = backup_sqlite(url, tmp_path / "backups", NOW)

    with engine.connect() as conn:
        assert not switches.read(conn).paused, "the live database keeps sending"
    restored = sa.create_engine(f"sqlite:///{copy}", poolclass=sa.pool.NullPool)
    with restored.connect() as conn:
        state = switches.read(conn)
    engine.dispose(), restored.dispose()
    assert state.paused and "restored from the backup of 2025-12-01 09:00 UTC" in state.pause_reason
