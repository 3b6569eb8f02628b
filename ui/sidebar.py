"""The sidebar every page shares: worker heartbeat and the banners that change what sending means."""

import streamlit as st

from core import queries
from core.heartbeat import HEARTBEAT_SECONDS
from ui import access
from ui.services import now, read, services
from ui.text import literal
from ui.widgets import provider_message, provider_trouble


# The switches the page was drawn with. The status below is live, the page is not: when a switch
# flips elsewhere (the CLI, another marketer, the circuit breaker), the whole page is drawn again,
# so that Settings never says "Sending normally" beside a sidebar that says sending is paused.
_DRAWN = "_nurture_switches_drawn"


def render() -> None:
    st.session_state.pop(_DRAWN, None)  # a whole run: the page is drawn with the switches read now
    with st.sidebar:
        _live_status()
        if access.oidc_configured() or services().settings.dashboard_password:
            st.button("Sign out", on_click=access.sign_out, key="sign_out", icon=":material/logout:")


@st.fragment(run_every=HEARTBEAT_SECONDS)
def _live_status() -> None:
    state = read(queries.system_state, now())
    switches = (state.paused, state.pause_reason, state.test_mode)
    if st.session_state.setdefault(_DRAWN, switches) != switches:  # only a rerun of this fragment gets here
        st.rerun()
    alive, age = queries.heartbeat(state.worker_last_seen, now(), HEARTBEAT_SECONDS)
    if alive:
        st.badge("Worker running", icon=":material/favorite:", color="green")
    else:
        st.badge("Worker not running", icon=":material/heart_broken:", color="red")
    if age is None:
        st.caption("no worker has ever reported in: start it with `make run` or `.venv/bin/python scheduler.py`")
    elif alive:
        st.caption(f"last seen {_seconds(age)} ago")
    else:  # what it means for the marketer, not only since when
        st.caption(f"last seen {_seconds(age)} ago. Until it runs again nothing is sent, and requests from this "
                   "dashboard wait.")
    if state.paused:
        st.error(f"**Sending paused.** Resume it on the Settings page.\n\n{_reason(state.pause_reason)}",
                 icon=":material/pause_circle:")
    elif state.retrying:
        st.warning(f"**Provider trouble.** {provider_trouble(state.retrying)}", icon=":material/sync_problem:")
        with st.expander("What Resend answered"):
            provider_message(state.retry_reason)
    # Test mode first: a switch someone flipped, which changes every new signup's timing. Below the pause and
    # the dry run it fell under the fold of a 768-pixel screen.
    if state.test_mode:
        st.info("**Test mode.** New signups get test timing: the 7 emails go one minute apart.",
                icon=":material/timer:")
    if services().settings.dry_run:
        st.warning("**Dry run.** No RESEND_API_KEY is set: emails are rendered and marked sent, "
                   "but nothing is delivered.", icon=":material/science:")


def _reason(typed: str | None) -> str:
    """The marketer's reason on a line of its own and quoted: free text with no full stop of its own
    ran into the next sentence."""
    return f"Reason: “{literal(typed)}”" if typed else "No reason given."


def _seconds(age: float) -> str:
    if age < 120:
        return f"{int(age)} s"
    if age < 7200:
        return f"{int(age // 60)} min"
    return f"{int(age // 3600)} h"
