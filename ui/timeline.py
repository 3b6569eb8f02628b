"""One contact's timeline: each step's state, when and why, the manual actions and the audit trail."""

import pandas as pd
import streamlit as st

from core import controls, queries, side_status
from core.outcomes import may_have_been_delivered
from ui import confirm, glyphs
from ui.text import literal
from ui.commands import Command
from ui.services import now, read, services
from ui.widgets import (MAY_GO_TWICE, REQUESTS_REFRESH_SECONDS, SEGMENT_BADGE, STEP_PICKER_WIDTH, ago,
                        event_detail, my_requests, sequence_status, step_title, when)


# A step still waiting or under way would go twice if it were resent as well.
_NOT_FINISHED = ("none", "waiting", "due", "sending")
# No "at once": nothing goes while sending is paused (the dialog then says so).
_IN_TURN = ("It goes next, after any earlier step still to come (one email at a time, in order), "
            "once sending is not paused. Later steps then wait for it, each at least half its planned gap after it.")
# A cancelled sequence has no Resume: every action but Unsubscribe stays greyed out afterwards.
_FOR_GOOD = ("**This cannot be undone from the dashboard:** a cancelled sequence cannot be resumed, and none "
             "of its steps can be resent or retried.")


def render(contact_id: str, *, on_close=None) -> None:
    """Draw the timeline of `contact_id`; `on_close` is the close button's callback."""
    state = read(queries.system_state, now())
    detail = read(queries.contact_detail, contact_id, now(), paused=state.paused)
    if detail is None:
        st.warning("That contact no longer exists (it may have been erased).")
        return
    contact, enrollment = detail["contact"], detail["enrollment"]
    with st.container(border=True, key="timeline"):
        # A row that keeps the button at its own width: a seventh of the box cut "Close" to "C…" at 1024 px.
        with st.container(horizontal=True, vertical_alignment="center"):
            st.subheader(literal(contact["first_name"] or contact["email"]), width="stretch")
            if on_close:
                st.button("Close", on_click=on_close, icon=":material/close:", key="close_timeline")
        _badges(contact, enrollment, detail["failed_steps"])
        _waiting_requests(contact["id"])
        _notion(contact["id"])
        for line in detail["steps"]:
            _step(line)
        if enrollment:
            _actions(contact, enrollment, detail["steps"])
        _history(detail["events"])
        my_requests()


def _badges(contact: dict, enrollment: dict | None, failed_steps: int) -> None:
    parts = [f"**{literal(contact['email'])}**"]
    if contact["business_name"]:
        parts.append(literal(contact["business_name"]))
    if enrollment:
        parts.append(f":{SEGMENT_BADGE[enrollment['segment']]}-badge[{enrollment['segment']}]")
        status, colour = sequence_status(enrollment["status"], failed_steps)
        parts.append(f":{colour}-badge[{status}]")
        parts.append(f":gray-badge[{enrollment['timing']} timing]")
    if contact["is_test"]:
        parts.append(":violet-badge[test contact]")
    if contact["suppressed_at"]:
        parts.append(f":red-badge[suppressed: {literal(contact['suppressed_reason'] or 'bounce')}]")
    elif contact["unsubscribed_at"]:
        parts.append(f":gray-badge[unsubscribed {when(contact['unsubscribed_at'])}]")
    st.markdown(" · ".join(parts))
    counts = ""
    if enrollment and enrollment["red_systems"] is not None:
        counts = f" · {enrollment['red_systems']} red, {enrollment['orange_systems'] or 0} orange systems"
    reason = (f" · {literal(queries.humane(enrollment['status_reason']))}"
              if enrollment and enrollment["status_reason"] else "")
    st.caption(f"Signed up {when(contact['created_at'])} ({ago(contact['created_at'])}){counts}{reason}")


_SEEN_WAITING = "_nurture_timeline_waiting"


@st.fragment(run_every=REQUESTS_REFRESH_SECONDS)
def _waiting_requests(contact_id: str) -> None:
    """Requests about this contact still waiting for a worker, whoever asked and whenever: "Your recent
    requests" lists only this session's, so after a reload, or for a colleague, a pending cancel or
    unsubscribe was nowhere on the timeline, which still read "active". Redraws the page once one is done."""
    pending = read(queries.pending_actions_for, contact_id)
    ids = {r["id"] for r in pending}
    seen = st.session_state.get(_SEEN_WAITING, {})
    st.session_state[_SEEN_WAITING] = {contact_id: ids}
    if seen.get(contact_id, set()) - ids:
        st.rerun()  # one was carried out: the steps above and below show its effect
    if not pending:
        return
    asked = "; ".join(f"**{r['kind'].replace('_', ' ')}** ({_of_step(r)}asked {ago(r['requested_at'])} by "
                      f"{literal(r['requested_by'])})" for r in pending)
    st.info(f"Waiting for the worker: {asked}. The steps below do not show it until the worker has carried it out.",
            icon=":material/hourglass_top:")


def _of_step(request: dict) -> str:
    return f"step {request['step']}, " if request.get("step") else ""


def _notion(contact_id: str) -> None:
    if not services().settings.notion_configured:
        return
    state = read(side_status.contact_notion_states, [contact_id])[contact_id]
    link = f" · [open the page]({state.page_url})" if state.page_url else ""
    when_synced = f" {when(state.synced_at)}" if state.synced_at else ""
    error = f" · last error: {literal(state.last_error)}" if state.last_error else ""
    st.caption(f"Notion mirror: {state.state}{when_synced}{link}{error}")


def _step(line: queries.StepLine) -> None:
    st.markdown(f"{glyphs.inline(line.state)} &nbsp; **Step {line.step} · {step_title(line.step)}** — "
                f"{literal(line.headline)}")
    if line.facts:
        st.caption(" · ".join(literal(fact) for fact in line.facts))


def _actions(contact: dict, enrollment: dict, steps: list[queries.StepLine]) -> None:
    st.markdown("**Actions**")
    stopped = bool(contact["unsubscribed_at"] or contact["suppressed_at"])
    # A row that wraps, each button as wide as its label: five equal columns cut them to "Resend s…",
    # "Cancel s…" and "Unsubsc…" at 1024 px.
    row = st.container(horizontal=True, vertical_alignment="bottom")
    number = row.selectbox("Step", [s.step for s in steps], key="action_step", width=STEP_PICKER_WIDTH,
                           format_func=lambda n: f"{n} · {step_title(n)}")
    line = steps[number - 1]
    target = {"enrollment_id": enrollment["id"], "step": number, "contact_id": contact["id"]}
    # The resend names the generation on screen, so a second click on a stale page never sends a third copy.
    seen = {"generation": line.send["generation"]} if line.send else {}
    who = literal(contact["email"])
    # A stop cannot recall an email already handed to Resend (DESIGN §4.3): say so before, not after it arrives.
    # Core's rule and words: a batch refused at every attempt sent nothing, and its next claim drops the stopped.
    clause = controls.still_going_clause(read(queries.steps_still_going, enrollment["id"]))
    still_going = f" {clause[:1].upper()}{clause[1:]}." if clause else ""
    uncertain = line.state == "failed" and may_have_been_delivered(line.send["last_error"])
    if line.state == "skipped":
        question = f"Send step {number} to **{who}** after all?"
    elif line.state == "failed" and not uncertain:  # "again" told the marketer they had had it once already
        question = (f"Send step {number} to **{who}** now, as a new email? Its last try was refused, so they have "
                    "not had it.")
    else:
        question = f"Send step {number} to **{who}** again, as a new email?"
    if uncertain:
        # As the Sends page's Retry warns: without it, resending from here was the unwarned road to a second copy.
        question += f" {MAY_GO_TWICE}"
    with row:
        confirm.button("Resend step", Command(
            "resend_step", ({**target, **seen},), f"{question} {_IN_TURN}", "Yes, resend", f"Resend of step {number} requested."),
            key="resend_step",
            disabled=stopped or enrollment["status"] == "cancelled" or line.state in _NOT_FINISHED,
            help=f"Sends a finished or skipped step as a new email. {_IN_TURN}")
        confirm.button("Skip step", Command(
            "skip_step", (target,), f"Skip step {number} for **{who}**? The sequence moves on to the next step.",
            "Yes, skip it", f"Skip of step {number} requested."), key="skip_step",
            disabled=line.state not in ("waiting", "due"), help="Only a step not yet sent can be skipped.")
        confirm.button("Cancel sequence", Command(
            "cancel_sequence", ({"enrollment_id": enrollment["id"], "contact_id": contact["id"]},),
            f"Cancel every email still to come for **{who}**?{still_going} {_FOR_GOOD}", "Yes, cancel for good",
            "Cancellation requested."),
            key="cancel_sequence", disabled=enrollment["status"] != "active")
        confirm.button("Unsubscribe", Command(
            "unsubscribe", ({"contact_id": contact["id"]},),
            f"Unsubscribe **{who}**? Nothing more is ever sent to them.{still_going}", "Yes, unsubscribe",
            "Unsubscribe requested."), key="unsubscribe", disabled=bool(contact["unsubscribed_at"]))


def _history(events: list[dict]) -> None:
    with st.expander(f"Audit trail ({len(events)})"):
        if not events:
            st.caption("Nothing recorded yet.")
            return
        st.dataframe(pd.DataFrame([{
            "when": when(e["at"]), "who": e["actor"], "what": e["kind"].replace("_", " "),
            "detail": event_detail(e["detail"]),
        } for e in events]), hide_index=True, width="stretch")
