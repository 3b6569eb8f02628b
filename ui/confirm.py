"""Confirmation before anything changes: a button stores the command, a dialog asks, Yes performs it.

The pending command lives in Session State, so the dialog is drawn again on every run until
it is answered; that keeps it working in the browser and under AppTest alike.
"""

from collections.abc import Callable

import streamlit as st

from core import queries
from ui import access
from ui.commands import NO_WORKER_NOTE, PAUSED_NOTE, QUEUES_AN_EMAIL, SWITCHES, Command, perform
from ui.services import now, read, worker_running
from ui.text import literal

PENDING = "_nurture_pending_command"


def ask(command: Command | Callable[[], Command]) -> None:
    # A callable is built now, at the click, from what the page's inputs hold at this moment: a
    # command built while the page was drawn would miss text typed since (without Enter).
    st.session_state[PENDING] = command() if callable(command) else command


def forget() -> None:
    st.session_state.pop(PENDING, None)


def button(label: str, command: Command | Callable[[], Command], *, key: str, disabled: bool = False, help: str | None = None,
           primary: bool = False, icon: str | None = None) -> None:
    """A button that opens the confirmation dialog for `command`."""
    st.button(label, key=key, on_click=ask, args=(command,), disabled=disabled, help=help, icon=icon,
              type="primary" if primary else "secondary")


def render() -> None:
    """Draw the dialog when a command waits for an answer (called once per run, after the page)."""
    command = st.session_state.get(PENDING)
    if command is not None:
        _dialog(command)


@st.dialog("Please confirm", on_dismiss=forget)
def _dialog(command: Command) -> None:
    st.markdown(command.question)
    if command.kind in SWITCHES:  # the dashboard flips these itself: no worker, queue or pause to wait for
        carried_out = "It takes effect at once."
    else:
        state = read(queries.system_state, now())
        if command.kind in QUEUES_AN_EMAIL and state.paused:
            st.warning(f"**{PAUSED_NOTE}**", icon=":material/pause_circle:")
        carried_out = "Sequence actions are carried out by the worker within a few seconds."
        if not worker_running(state):
            # "Within a few seconds" beside a sidebar saying no worker runs: the request would wait unseen.
            st.warning(f"**{NO_WORKER_NOTE}**", icon=":material/heart_broken:")
            carried_out = ""
    st.caption(f"Recorded in the audit trail as **{literal(access.actor())}**. {carried_out}")
    yes, no = st.columns(2)
    if yes.button(command.confirm_label, type="primary", key="confirm_yes", width="stretch"):
        forget()
        perform(command)
        st.rerun()
    if no.button("Go back", key="confirm_no", width="stretch"):
        forget()
        st.rerun()
