"""The dashboard's one set of services (built once per process) and the read/write helpers pages use."""

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

import streamlit as st

from core import db
from core.bootstrap import Services, build_services
from ui import access

T = TypeVar("T")


@st.cache_resource(show_spinner=False, on_release=lambda built: built.close())
def services() -> Services:
    """Built from the environment on first use; migrating is idempotent, so a fresh checkout just works."""
    return build_services(migrate=True)


def now() -> datetime:
    return services().clock()


def read(query: Callable[..., T], *args, **kwargs) -> T:
    """Run one read-model query in its own snapshot transaction (only once the gate is passed)."""
    access.ensure_allowed()
    with db.read_transaction(services().engine) as conn:
        return query(conn, *args, **kwargs)


def write(command: Callable[..., T], *args, **kwargs) -> T:
    """Run one core command in a write transaction (only once the gate is passed)."""
    access.refuse_unless_allowed()
    with db.write_transaction(services().engine) as conn:
        return command(conn, *args, **kwargs)


def act(service: Callable[..., T], *args, **kwargs) -> T:
    """Call a core service that takes the Services (e.g. enroll_now), once the gate is passed."""
    access.refuse_unless_allowed()
    return service(services(), *args, **kwargs)
