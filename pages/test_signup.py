"""Test signup: the website's form, enrolled through the same service, as a test contact on test timing."""

import streamlit as st

from core import queries
from core.enrollments import SignupRequest
from core.errors import InvalidSignup
from core.intake import enroll_now
from core.sequencing import segment_for
from core.signups import parse_signup
from ui import frame
from ui.services import act, now, read, worker_running
from ui.text import literal
from ui.widgets import SEGMENT_BADGE

RESULT = "_test_signup_result"
SEGMENT_RULE = {
    "CRITICAL": "two or more red systems",
    "URGENT": "one red system, or two or more orange ones",
    "OPTIMIZE": "no red system and at most one orange one",
}

frame.begin()
st.title("Test signup")
st.caption("Exactly what the website's assessment form sends. The contact is flagged as a test and always "
           "gets test timing: the 7 emails go one minute apart.")

details, counts = st.columns([3, 2], gap="large")
with details:
    email = st.text_input("Email", key="ts_email", placeholder="you@example.com")
    first_name = st.text_input("First name", key="ts_first_name")
    business_name = st.text_input("Business name", key="ts_business_name")
    score = st.slider("Assessment score", 0, 100, 50, key="ts_score")
with counts:
    # Outside a form on purpose: the segment below follows every change of the counts.
    red = st.number_input("Red systems (broken)", 0, 50, 0, key="ts_red")
    orange = st.number_input("Orange systems (struggling)", 0, 50, 0, key="ts_orange")
    yellow = st.number_input("Yellow systems", 0, 50, 0, key="ts_yellow")
    green = st.number_input("Green systems", 0, 50, 0, key="ts_green")
    segment = segment_for(red, orange).value
    with st.container(border=True):
        st.caption("Segment")
        st.markdown(f"### :{SEGMENT_BADGE[segment]}[{segment}]")
        st.caption(f"{SEGMENT_RULE[segment].capitalize()}.")


def _submit() -> None:
    # From Session State, as the click finds it: the page's variables are from the run before the
    # click and would miss a field typed last without Enter.
    form = st.session_state
    body = {"email": form["ts_email"], "first_name": form["ts_first_name"] or None,
            "business_name": form["ts_business_name"] or None, "red_systems": form["ts_red"],
            "orange_systems": form["ts_orange"], "yellow_systems": form["ts_yellow"], "green_systems": form["ts_green"],
            "assessment_score": form["ts_score"]}
    try:
        signup = parse_signup(body)
    except InvalidSignup as exc:
        st.session_state[RESULT] = {"errors": exc.errors}
        return
    request = SignupRequest(signup, source="dashboard", is_test=True, force_test_timing=True)
    [result] = act(enroll_now, [request])
    st.session_state[RESULT] = {"email": result.email, "segment": result.segment, "contact_id": result.contact_id,
                                "outcome": result.outcome.value}


def _when_the_welcome_goes() -> str:
    state = read(queries.system_state, now())
    if state.paused:
        return "Sending is paused: the welcome email goes once sending is resumed (Settings)."
    if not worker_running(state):
        return "No worker is running: the welcome email goes once the worker runs again."
    return "The worker sends the welcome email within seconds."


st.button("Sign up", type="primary", on_click=_submit, key="ts_submit", icon=":material/send:")

outcome = st.session_state.get(RESULT)
if outcome and "errors" in outcome:
    for field, message in outcome["errors"].items():
        st.error(f"**{field.replace('_', ' ')}**: {literal(message)}")
elif outcome:
    email = literal(outcome["email"])
    if outcome["outcome"] == "refused":
        # An erased address keeps no contact to link to: the refusal itself is all there is.
        st.error(f"{email} was erased (`forget`): signups from this address are refused, and nothing was stored.")
    else:
        if outcome["outcome"] == "enrolled":
            when_sent = _when_the_welcome_goes()
            st.success(f"Enrolled **{email}** as **{outcome['segment']}**, on test timing. {when_sent}")
        elif outcome["outcome"] == "updated":
            st.info(f"{email} already had a sequence with nothing sent yet: it is now **{outcome['segment']}**. "
                    "It keeps its own timing, and no second sequence was started.")
        else:
            st.warning(f"{email} already has a sequence that has begun or was stopped: this signup was recorded, "
                       "and the sequence is left as it was. No second one was started.")
        st.page_link("pages/signups.py", label="Open the timeline", icon=":material/timeline:",
                     query_params={"contact": outcome["contact_id"]})
