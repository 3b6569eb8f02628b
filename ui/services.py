"""The dashboard's one set of services (built once per process) and the read/write helpers pages use.

Every road to the database passes through here, so this is where trouble with it (a wrong
configuration, a database that cannot be reached) becomes one sentence and the end of the run,
instead of Streamlit's redacted traceback.
"""

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import NoReturn, TypeVar

import sqlalchemy as sa
import streamlit as st

from core import db, queries
from core.bootstrap import Services, build_services
from core.errors import ConfigError, first_line
from core.deployment_checks import dashboard_exposure
from core.heartbeat import HEARTBEAT_SECONDS
from ui import access
from ui.text import literal

T = TypeVar("T")
log = logging.getLogger(__name__)


@st.cache_resource(show_spinner=False, on_release=lambda built: built.close())
def _built_services() -> Services:
    """Built from the environment on first use; migrating is idempotent, so a fresh checkout just works."""
    return build_services(migrate=True)


def services(*, before_stopping: Callable[[], object] | None = None) -> Services:
    """The dashboard's services, or the run stopped with one sentence saying what is wrong (after
    `before_stopping`, which may still draw: nothing can once the run is stopped)."""
    with database_trouble_stops_the_run(before_stopping):
        try:
            return _built_services()
        except ConfigError as exc:  # bad settings, or a database migrated by a newer Nurture
            _stop(str(exc), before_stopping)


# Where Streamlit listens when no address is set (config.toml not read: `streamlit run` from another folder).
ALL_INTERFACES = "0.0.0.0"


def refuse_if_exposed() -> None:
    """Stop the run, before anything is drawn, when Streamlit serves this dashboard beyond this machine unlocked.

    Start-up checks DASHBOARD_HOST, which only `make run` hands to Streamlit; `streamlit run dashboard.py
    --server.address 0.0.0.0` (config.toml's advice behind a proxy) listens where Streamlit is told, whatever
    DASHBOARD_HOST says, and with no address set at all it listens on every interface.
    """
    settings = services().settings
    address = st.get_option("server.address") or ALL_INTERFACES
    if problem := dashboard_exposure(settings, address, dashboard_oidc=access.oidc_configured(),
                                     named="server.address"):
        _stop(problem)


def refuse_if_secrets_unreadable(before_stopping: Callable[[], object] | None = None) -> None:
    """Stop the run, before anything is drawn, when Streamlit's secrets file cannot be read: the gate, finding no
    [auth] in it, let in whoever reached the dashboard, with no sign-in and no word of why."""
    if access.unreadable_secrets():
        _stop("Streamlit cannot read its secrets file (secrets.toml), so the sign-in its [auth] section sets up "
              "cannot be checked, and nothing is shown until the file is fixed. Streamlit's log from start-up "
              "says what is wrong with it.", before_stopping)


@contextmanager
def database_trouble_stops_the_run(before_stopping: Callable[[], object] | None = None, *,
                                   writing: bool = False) -> Iterator[None]:
    """Show a database that cannot be reached as one sentence, and stop the run. `writing`: the run was
    recording something, and the sentence says it was not recorded (a locked SQLite file gives up after the
    lock wait; the dialog above still read "Recorded in the audit trail")."""
    try:
        yield
    except sa.exc.DBAPIError as exc:
        if not _unreachable(exc):
            raise
        # The driver's message names the host and database, never the password; the URL is not shown.
        log.warning("database unreachable: %s", first_line(exc), extra={"action": "dashboard"})
        # A lock held past the wait is no outage: "unreachable" sent the marketer to check a server that was up.
        state = (f"busy: another process held it for over {db.LOCK_WAIT_MS // 1000} s" if db.held_by_another(exc)
                 else "unreachable")
        sentence = f"The database is {state}: {literal(first_line(exc))}"
        if writing:
            sentence = f"{sentence.rstrip('.')}. Nothing was recorded: try again once it answers."
        _stop(sentence, before_stopping)


def _unreachable(exc: sa.exc.DBAPIError) -> bool:
    # The outage the worker and the intake recognise, or any other error on a connection SQLAlchemy found dead,
    # or a SQLite file that is not a database at all (sqlite3 calls that a DatabaseError, not an outage).
    return db.storage_unavailable(exc) or exc.connection_invalidated or db.not_a_database(exc)


def _stop(sentence: str, before_stopping: Callable[[], object] | None = None) -> NoReturn:
    if before_stopping:
        before_stopping()
    st.error(sentence, icon=":material/error:")
    st.stop()


def now() -> datetime:
    return services().clock()


def worker_running(state: queries.SystemState) -> bool:
    """Whether a worker beat recently: without one, nothing the dashboard asks for is carried out."""
    return queries.heartbeat(state.worker_last_seen, now(), HEARTBEAT_SECONDS)[0]


def read(query: Callable[..., T], *args, **kwargs) -> T:
    """Run one read-model query in its own snapshot transaction (only once the gate is passed)."""
    access.ensure_allowed()
    with database_trouble_stops_the_run(), db.read_transaction(services().engine) as conn:
        return query(conn, *args, **kwargs)


def write(command: Callable[..., T], *args, **kwargs) -> T:
    """Run one core command in a write transaction (only once the gate is passed)."""
    access.refuse_unless_allowed()
    with database_trouble_stops_the_run(writing=True), db.write_transaction(services().engine) as conn:
        return command(conn, *args, **kwargs)


def act(service: Callable[..., T], *args, **kwargs) -> T:
    """Call a core service that takes the Services (e.g. enroll_now), once the gate is passed."""
    access.refuse_unless_allowed()
    with database_trouble_stops_the_run(writing=True):
        return service(services(), *args, **kwargs)
