"""A database the dashboard cannot use is named in one sentence on every page, never a redacted traceback."""

import sqlite3
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from core import db
from core.bootstrap import build_services
from tests.dashboard.conftest import PAGES

PASSWORD = "s3cret-never-shown"


@pytest.fixture
def backend() -> str:
    return "sqlite"  # the app is pointed at each test's own broken database instead


def assert_stopped_with_one_sentence(at, *, saying: str) -> None:
    assert not at.exception, at.exception
    [error] = at.error
    assert error.value.startswith("The database is unreachable: ")
    assert saying in error.value
    assert not at.metric and not at.dataframe, "nothing after the sentence is drawn"


@pytest.mark.parametrize("page", PAGES)
def test_every_page_names_database_url_and_a_sqlite_file_that_cannot_be_opened(app_env, open_app, tmp_path, page):
    folder_in_the_way = tmp_path / "nurture.db"
    folder_in_the_way.mkdir()
    app_env(database_url=f"sqlite:///{folder_in_the_way}")

    at = open_app(page)

    # A setting to correct, as every entrypoint says it, rather than an outage to wait out.
    assert not at.exception, at.exception
    [error] = at.error
    assert error.value == f"DATABASE_URL names the SQLite file {folder_in_the_way}, which cannot be opened: it is a folder."
    assert not at.metric and not at.dataframe, "nothing after the sentence is drawn"


@pytest.mark.parametrize("page", ["pages/overview.py", "pages/signups.py"])
def test_a_file_that_is_not_a_sqlite_database_is_named_in_one_sentence(app_env, open_app, tmp_path, page):
    # sqlite3 calls it a DatabaseError, not an OperationalError: it reached Streamlit as a redacted traceback.
    not_a_database = tmp_path / "nurture.db"
    not_a_database.write_text("a spreadsheet saved under the database's name\n" * 100, encoding="utf-8")
    app_env(database_url=f"sqlite:///{not_a_database}")

    at = open_app(page)

    assert_stopped_with_one_sentence(at, saying="file is not a database")


@pytest.mark.postgres
def test_a_postgresql_database_that_does_not_exist_is_named_without_the_password(app_env, open_app, pg_url):
    missing = f"nurture_missing_{uuid.uuid4().hex[:8]}"
    app_env(database_url=make_url(pg_url).set(database=missing, password=PASSWORD)
            .render_as_string(hide_password=False))

    at = open_app("pages/signups.py")

    assert_stopped_with_one_sentence(at, saying="does not exist")
    assert missing.replace("_", r"\_") in at.error[0].value
    assert PASSWORD not in repr([e.value for e in at.error]) + repr(at.markdown)


@pytest.mark.parametrize("page", ["pages/overview.py", "pages/settings.py"])
def test_a_database_migrated_by_a_newer_release_is_named_in_one_sentence(app_env, make_settings, open_app, page):
    services = build_services(make_settings(), migrate=True)
    try:
        with db.write_transaction(services.engine) as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    finally:
        services.close()

    at = open_app(page)

    assert not at.exception, at.exception
    assert [e.value for e in at.error] == [
        "The database at DATABASE_URL was migrated by a newer version of Nurture (revision '9999' is unknown "
        "to this one), so run that version or newer, or restore a backup from before the upgrade."]
    assert not at.metric


@pytest.fixture
def own_pg_database(pg_url):
    """The URL of a PostgreSQL database made for this test alone, and a function that drops it."""
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    name = f"nurture_dropped_{uuid.uuid4().hex[:8]}"

    def drop() -> None:
        with admin.connect() as conn:  # FORCE: the dashboard's pooled connections go with it
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # a name made here

    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(pg_url).set(database=name).render_as_string(hide_password=False), drop
    finally:
        drop()
        admin.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("page", ["pages/overview.py", "pages/signups.py"])
def test_a_database_dropped_while_the_dashboard_runs_is_named_on_the_next_run(app_env, open_app,
                                                                               own_pg_database, page):
    url, drop = own_pg_database
    app_env(database_url=url)
    at = open_app(page)
    assert not at.exception and not at.error

    drop()
    at.run()

    assert_stopped_with_one_sentence(at, saying="does not exist")


def test_a_request_the_locked_database_refused_says_nothing_was_recorded(seeded, open_app, monkeypatch):
    # The dialog had just said "Recorded in the audit trail"; then "The database is unreachable: database is
    # locked" left the marketer to guess whether the unsubscribe was in.
    from core import actions

    def locked(*args, **kwargs):
        busy = sqlite3.OperationalError("database is locked")
        busy.sqlite_errorcode = sqlite3.SQLITE_BUSY  # as the driver's own errors carry it
        raise sa.exc.OperationalError("INSERT INTO action ...", {}, busy)

    monkeypatch.setattr(actions, "request_action", locked)
    at = open_app("pages/signups.py")
    at.query_params["contact"] = seeded["contacts"]["otto@example.com"].contact_id
    at.run()
    at.button(key="unsubscribe").click().run()
    at.button(key="confirm_yes").click().run()
    assert not at.exception, at.exception
    [error] = at.error
    assert error.value == ("The database is busy: another process held it for over 30 s: database is locked. "
                           "Nothing was recorded: try again once it answers.")
