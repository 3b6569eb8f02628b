"""Templates: each of the 7 emails for each segment, rendered with sample data, and a test send."""

import streamlit as st

from core import queries
from core.campaign import CHRISTMAS_2025, Segment
from core.emails import render_step, sample_context
from core.errors import InvalidSignup
from core.signups import parse_signup
from ui import commands, frame
from ui.services import now, read, services, worker_running
from ui.text import literal
from ui.widgets import STEP_PICKER_WIDTH, my_requests, step_title

ADDRESS_WIDTH = 260

frame.begin()
st.title("Templates")
st.caption("Rendered with sample data: Alex at Hollybrook Bakery, with the counts typical of the segment.")

# One row that wraps, each control at its own width: in fixed columns OPTIMIZE was cut off, and "Send"
# cut to "S", in a window narrower than a laptop's.
controls = st.container(horizontal=True, vertical_alignment="bottom")
segment = controls.segmented_control("Segment", [s.value for s in Segment], default="CRITICAL", required=True,
                                     key="tpl_segment")
number = controls.selectbox("Step", list(CHRISTMAS_2025.step_numbers), key="tpl_step", width=STEP_PICKER_WIDTH,
                            format_func=lambda n: f"{n} · {step_title(n)}")
settings = services().settings


def _send_me() -> None:
    try:
        to = parse_signup({"email": st.session_state.get("tpl_to", "")}).email
    except InvalidSignup as exc:
        st.session_state["tpl_error"] = exc.errors.get("email", "not a valid address")
        return
    st.session_state.pop("tpl_error", None)
    # As the click finds them: `number` and `segment` are the run's that drew the button, and a step chosen
    # just before the click, its rerun overtaken by the click's, sent the step shown before.
    number, segment = st.session_state["tpl_step"], st.session_state["tpl_segment"]
    commands.request("send_test", {"to": to, "step": number, "segment": segment,
                                   "request_id": commands.new_request_id()})
    # "Within seconds" beside a sidebar saying no worker runs: the test would wait unseen, and go whenever one starts.
    when = ("the worker sends it within seconds." if worker_running(read(queries.system_state, now()))
            else "No worker is running: it is sent if the worker runs again within the hour.")
    commands.flash(f"Test of step {number} ({segment}) requested for {literal(to)}: {when}")


controls.text_input("Send me this one", key="tpl_to", placeholder="you@example.com", width=ADDRESS_WIDTH,
                    help="The worker sends it with a [TEST] subject"
                         + (" (in dry run it is only recorded)." if settings.dry_run else "."))
controls.button("Send", on_click=_send_me, key="tpl_send", icon=":material/send:")
if error := st.session_state.get("tpl_error"):
    st.error(f"That address won't do: {literal(error)}")
my_requests()

# On by default once the season is over: every email (test sends too) then goes in that version, and a
# preview of the other one would show copy nobody receives any more.
after_season = st.toggle(
    f"As sent from {CHRISTMAS_2025.season_ends:%-d %B %Y} on", key="tpl_after_season",
    value=CHRISTMAS_2025.season_over(now()),
    help="From Christmas Eve the emails stop speaking of \"before Christmas\": steps 3, 5, 6 and 7 read differently.")
email = render_step(CHRISTMAS_2025.step(number), sample_context(segment, season_over=after_season),
                    unsubscribe_url=f"{settings.public_base_url}/unsubscribe/preview",
                    postal_address=settings.postal_address)
st.markdown(f"**Subject:** {literal(email.subject)}")
html, text = st.tabs(["HTML", "Text"])
with html:
    # Our own template with sample data, not user input: safe to show in a frame of its own.
    st.iframe(email.html, height="content", alt=f"Step {number} email for {segment}")
with text:
    st.code(email.text, language=None, wrap_lines=True)
