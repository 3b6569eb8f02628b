"""What the dashboard can ask for. Sequence actions become rows the worker carries out; switches flip at once.

Every command records who asked (ui.access.actor) in the audit trail.
"""

import uuid
from dataclasses import dataclass, field

import streamlit as st

from core import actions, switches
from ui import access
from ui.services import now, write

MY_REQUESTS = "_nurture_my_requests"
FLASH = "_nurture_flash"
_KEEP = 100  # a whole page of retries (50) and more, so no refusal among them drops out of sight
# Requests that put an email in the queue: while sending is paused, it waits there until the resume.
QUEUES_AN_EMAIL = frozenset({"resend_step", "retry_send"})
PAUSED_NOTE = "Sending is paused: it goes when you resume."
# Commands the dashboard carries out itself, at once; every other kind waits for a worker.
SWITCHES = frozenset({"pause", "resume", "test_mode"})
NO_WORKER_NOTE = "No worker is running: this is recorded now and carried out once the worker runs again."


@dataclass(frozen=True)
class Command:
    """A confirmed intent: a worker action kind (one row per payload), or 'pause' / 'resume' / 'test_mode'."""

    kind: str
    payloads: tuple[dict, ...] = field(default_factory=tuple)
    question: str = ""
    confirm_label: str = "Confirm"
    done_message: str = "Requested: the worker carries it out within a few seconds."


def request(kind: str, payload: dict) -> str:
    """Queue one action for the worker; return its id, remembered for this session's request list."""
    action_id = write(actions.request_action, kind, payload, requested_by=access.actor(), now=now())
    mine = st.session_state.setdefault(MY_REQUESTS, [])
    mine.insert(0, action_id)
    del mine[_KEEP:]
    return action_id


def set_test_mode(enabled: bool) -> None:
    write(switches.set_test_mode, enabled, actor=access.actor(), now=now())


def perform(command: Command) -> None:
    """Carry out a confirmed command and leave a message for the next run."""
    if command.kind in ("pause", "resume"):
        payload = command.payloads[0] if command.payloads else {}
        refusal = (write(switches.pause_unless_paused, payload.get("reason"), actor=access.actor(), now=now())
                   if command.kind == "pause" else
                   write(switches.resume_seen, payload.get("seen"), actor=access.actor(), now=now()))
        if refusal:
            flash(refusal, icon=":material/warning:")
            return
    elif command.kind == "test_mode":
        set_test_mode(bool(command.payloads[0]["enabled"]))
    else:
        for payload in command.payloads:
            request(command.kind, payload)
    flash(command.done_message)


def new_request_id() -> str:
    return uuid.uuid4().hex


def flash(message: str, *, icon: str = ":material/check_circle:") -> None:
    st.session_state.setdefault(FLASH, []).append((message, icon))


def show_flash() -> None:
    """Toast the messages left by the previous run's commands."""
    for message, icon in st.session_state.pop(FLASH, []):
        st.toast(message, icon=icon)
