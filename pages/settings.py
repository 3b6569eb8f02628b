"""Settings: test mode, pause/resume, the integrations' health and the audit trail."""

from datetime import datetime
from email.utils import parseaddr

import pandas as pd
import streamlit as st

from core import queries, side_status
from ui import commands, confirm, frame
from ui.commands import Command
from ui.services import now, read, services
from ui.text import literal
from ui.widgets import (STATUS_BADGE, ago, event_detail, my_requests, page_picker, provider_message,
                        provider_trouble, when)

AUDIT_PAGE = 50
CARD_WIDTH = 290  # px: three integration cards side by side in a laptop window

frame.begin()
st.title("Settings")
state = read(queries.system_state, now())
settings = services().settings


def _pause_command() -> Command:
    """Built at the click, so the reason is whatever the box holds then, typed with or without Enter."""
    reason = (st.session_state.get("pause_reason") or "").strip() or "paused from the dashboard"
    return Command("pause", ({"reason": reason},),
                   # Test sends to yourself (Templates) are not campaign emails: the worker sends them even while paused.
                   f"Pause the campaign? No sequence email goes to anyone until it is resumed; test sends "
                   f"from the Templates page still go.\n\nReason: *{literal(reason)}*",
                   "Yes, pause", "Sending paused.")


def _resume_command(seen: datetime | None):
    """Built at the click, with how many emails the resume lets go at once: after a long pause "everything
    due" may be thousands, and the marketer should know that before saying yes."""
    def build() -> Command:
        due = read(queries.queue_counts, now())["due_now"]
        what = (f"**{due:,} email{' is' if due == 1 else 's are'} due** and go{'es' if due == 1 else ''} out "
                "straight away; later ones when they fall due." if due else
                "No email is due yet: the next ones go when they fall due.")
        # With the pause it resumes: one that came after this page was drawn is not lifted unseen.
        return Command("resume", ({"seen": seen},), f"Resume sending? {what}", "Yes, resume", "Sending resumed.")
    return build


sending, mode = st.columns(2, gap="large")
with sending:
    st.subheader("Sending")
    if state.paused:
        st.error(f"**Paused.** {literal(state.pause_reason or 'No reason given.')}", icon=":material/pause_circle:")
        confirm.button("Resume sending", _resume_command(state.paused_since), key="resume", primary=True,
                       icon=":material/play_arrow:")
    elif state.retrying:
        st.warning(f"**Sending is retrying.** {provider_trouble(state.retrying)} Each goes once Resend answers, "
                   "with the same idempotency key, so none goes twice.", icon=":material/sync_problem:")
        provider_message(state.retry_reason)
    else:
        st.success("Sending normally.", icon=":material/check_circle:")
    if not state.paused:
        st.text_input("Reason (shown to everyone)", key="pause_reason", placeholder="e.g. checking the copy of step 3")
        confirm.button("Pause sending", _pause_command, key="pause", icon=":material/pause:")
with mode:
    st.subheader("Test mode")
    turn_on = not state.test_mode
    st.markdown(f"Test mode is **{'off' if turn_on else 'on'}**.")
    confirm.button("Turn test mode on" if turn_on else "Turn test mode off", Command(
        "test_mode", ({"enabled": turn_on},),
        "Turn test mode **on**? New signups then get all 7 emails one minute apart instead of over 11 days."
        if turn_on else "Turn test mode **off**? New signups then get the 11-day production timing.",
        "Yes, turn it on" if turn_on else "Yes, turn it off", f"Test mode turned {'on' if turn_on else 'off'}."),
        key="test_mode_switch", icon=":material/science:")
    st.caption("When on, **new** signups get test timing: their 7 emails go one minute apart instead of over "
               "11 days (0 h, 24 h, 72 h … 264 h). Sequences already running keep their timing, and signups "
               "from the Test signup page always use test timing. Every change is in the audit trail.")

st.subheader("Integrations")
# Cards of one width in a row that wraps: three columns squeezed each card to a word a line below
# about 1,000 pixels ("Check connectio / n"); now a narrow window stacks them instead.
resend = notion = discord = st.container(horizontal=True, key="integrations")
with resend.container(border=True, width=CARD_WIDTH):
    st.markdown("**Resend** (email)")
    if settings.dry_run:
        st.markdown(":orange-badge[dry run] no RESEND_API_KEY: emails are rendered and recorded, never delivered")
    else:
        domain = parseaddr(settings.resend_from_email)[1].rpartition("@")[2] or "not set"  # "Team <a@b.c>" too
        st.markdown(f":green-badge[key set] sending as `{settings.resend_from_email or 'not set'}` "
                    f"(domain `{domain}`)")
    check = read(queries.latest_action, "check_connection")
    if check:
        badge = STATUS_BADGE.get(check["status"], "gray")
        st.caption(f":{badge}-badge[{check['status']}] last check {ago(check['requested_at'])}: "
                   f"{literal(check['result']) if check['result'] else 'waiting for the worker'}")
    st.button("Check connection", key="check_connection", icon=":material/network_check:",
              on_click=lambda: commands.request("check_connection", {}))


def _channel(column, title: str, what: str, configured: bool, health: dict | None) -> None:
    with column.container(border=True, width=CARD_WIDTH):
        st.markdown(f"**{title}** ({what})")
        if not configured or health is None:
            st.markdown(":gray-badge[off] not configured")
            return
        badge, word = ("green", "ok") if health["healthy"] else ("red", "paused" if health["outage"] else "failing")
        st.markdown(f":{badge}-badge[{word}] {health['backlog']} waiting"
                    + (f", oldest {int(health['lag_seconds'])} s" if health["backlog"] else ""))
        if health["given_up_7d"]:
            st.caption(f"{health['given_up_7d']} given up in the last 7 days after repeated refusals")
        if "last_synced_at" in health:
            st.caption(f"{health['pages_linked']:,} pages linked · last write {_ago_or(health['last_synced_at'], 'never')}")
        if "last_posted_at" in health:
            posted = health["last_posted_at"]
            st.caption(f"Last alert posted {_ago_or(posted, '')}" if posted else "No alert posted in the last 30 days")
        if health["last_error"]:
            st.caption(f"Last error: {literal(health['last_error'])}")


def _ago_or(iso_time: str | None, otherwise: str) -> str:
    return ago(datetime.fromisoformat(iso_time)) if iso_time else otherwise


def _side_channels() -> tuple[dict | None, dict | None]:
    notion = read(side_status.notion_overview, now()) if settings.notion_configured else None
    discord = read(side_status.discord_overview, now()) if settings.discord_configured else None
    return notion, discord


notion_health, discord_health = _side_channels()
_channel(notion, "Notion", "mirror", settings.notion_configured, notion_health)
_channel(discord, "Discord", "CRITICAL alerts", settings.discord_configured, discord_health)
my_requests()

st.subheader("Audit trail")
kind_filter, actor_filter = st.columns(2)
kind = kind_filter.text_input("Kind contains", key="audit_kind", placeholder="e.g. retry, unsubscribed, send sent")
actor = actor_filter.text_input("Who contains", key="audit_actor", placeholder="e.g. dashboard, resend, worker")
total = read(queries.audit_count, kind=kind.strip(), actor=actor.strip())
area = st.container()
offset = page_picker(total, AUDIT_PAGE, key="audit_page", listing=(kind.strip(), actor.strip()))
events = read(queries.audit_page, offset=offset, limit=AUDIT_PAGE, kind=kind.strip(), actor=actor.strip())
with area:
    st.caption(f"{total:,} event{'s' if total != 1 else ''}, newest first")
    if events:
        st.dataframe(pd.DataFrame([{"when": when(e["at"]), "who": e["actor"], "what": e["kind"].replace("_", " "),
                                    "contact": e["email"] or "", "detail": event_detail(e["detail"])}
                                   for e in events]),
                     hide_index=True, width="stretch")
