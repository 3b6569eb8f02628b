"""What each page shows a marketer (UI behaviour, so SQLite only: the read model is tested on both)."""

import base64
import codecs
import csv
import io
import json
import re
from datetime import timedelta

import pyarrow as pa
import pytest
import sqlalchemy as sa
from streamlit.proto.Metric_pb2 import Metric

from core import db, queries
from core.bootstrap import build_services
from core.campaign import CHRISTMAS_2025
from core.emails import render_step, sample_context
from core.intake import enroll_now
from core.timeutil import utcnow
from tests.dashboard.conftest import back_off, page_text, shown
from tests.support import signup_request
from ui import glyphs
from ui.downloads import contacts_csv


@pytest.fixture
def backend() -> str:
    return "sqlite"


def test_the_empty_overview_says_so_instead_of_drawing_empty_charts(open_app):
    at = open_app()
    assert {m.label: m.value for m in at.metric}["Signups"] == "0"
    assert "No signups yet." in [i.value for i in at.info]
    assert "Nothing is due: nobody has signed up yet." in [i.value for i in at.info]


def test_the_scheduled_card_says_how_many_go_within_a_day_instead_of_a_change_since_yesterday(seeded, open_app):
    cards = {m.label: m.proto for m in open_app().metric}
    scheduled = cards["Scheduled"]
    assert re.fullmatch(r"\d+ due within 24 h", scheduled.delta), scheduled.delta
    assert not scheduled.delta_description, "it is no change since yesterday"
    assert scheduled.direction == Metric.MetricDirection.NONE, "no arrow, as if the queue had grown"
    assert cards["Signups"].delta_description == "in 24 h"


def test_a_change_since_yesterday_is_grouped_like_its_figure_and_keeps_its_arrow(monkeypatch, open_app):
    """A busy day read "1144 vs yesterday" under "28,345"."""
    real = queries.overview_data

    def busy(conn, now, *, days):
        data = real(conn, now, days=days)
        change = {"sent": 1144, "failed": -1203, "bounced": 0}
        data["kpis"] = [{**k, "value": k["value"] + 28345, "delta": change.get(k["key"], k["delta"])}
                        for k in data["kpis"]]
        return data

    monkeypatch.setattr(queries, "overview_data", busy)
    cards = {m.label: m.proto for m in open_app().metric}
    assert (cards["Emails sent"].body, cards["Emails sent"].delta) == ("28,345", "1,144")
    assert cards["Emails sent"].direction == Metric.MetricDirection.UP
    assert (cards["Failed"].delta, cards["Failed"].direction) == ("-1,203", Metric.MetricDirection.DOWN)
    assert cards["Failed"].color == Metric.MetricColor.GREEN, "fewer failures is good news"
    assert (cards["Bounced"].delta, cards["Bounced"].direction) == ("0", Metric.MetricDirection.NONE)
    assert cards["Bounced"].color == Metric.MetricColor.GRAY


def test_the_overview_cards_are_people_on_one_row_and_their_emails_on_the_next(seeded, open_app):
    at = open_app()
    rows = {key: [m.label for m in block.metric] for key in ("kpis_people", "kpis_emails")
            for block in [_block(at.main, key)]}
    assert rows == {"kpis_people": ["Signups", "Critical", "Urgent", "Optimize"],
                    "kpis_emails": ["Emails sent", "Scheduled", "Failed", "Unsubscribed", "Bounced"]}


def _block(node, key: str):
    """The container with this key, anywhere under `node`."""
    if getattr(node, "key", None) == key:
        return node
    for child in (node.children.values() if isinstance(getattr(node, "children", None), dict) else ()):
        if (found := _block(child, key)) is not None:
            return found
    return None


def test_the_overview_funnel_draws_failed_and_stopped_emails_in_its_legend(seeded, open_app):
    at = open_app()
    [funnel] = [c for c in at.get("vega_lite_chart") if '"xOffset"' in c.proto.spec]
    spec = json.loads(funnel.proto.spec)
    scale = spec["encoding"]["color"]["scale"]
    stages = dict(zip(scale["domain"], scale["range"]))
    assert stages["failed"] == "#dc2626" and "cancelled or skipped" in stages
    drawn = {(r["step"], r["stage"]): r["count"] for r in _chart_rows(funnel)}
    assert drawn[(1, "failed")] == 1, "the Failed figure's one failure is on the chart"


def _chart_rows(chart) -> list[dict]:
    """The rows a chart draws: Streamlit sends them beside the spec, as Arrow streams."""
    return [row for named in chart.proto.datasets for row in pa.ipc.open_stream(named.data.data).read_all().to_pylist()]


def state_of(glyph_uri: str) -> str:
    """The state a step glyph shows: each SVG names it in its <title>."""
    svg = base64.b64decode(glyph_uri.split(",", 1)[1]).decode()
    return re.search(r"<title>(\w+)</title>", svg).group(1)


def test_the_signups_table_has_one_row_per_contact_with_seven_step_icons(seeded, open_app):
    at = open_app("pages/signups.py")
    table = at.dataframe(key="signups_table").value
    assert sorted(table["Email"]) == sorted(seeded["contacts"])
    casey = table[table["Email"] == "casey@example.com"].iloc[0]
    assert [state_of(casey[str(n)]) for n in range(1, 8)] == ["clicked", "due"] + ["waiting"] * 5
    broken = table[table["Email"] == "broken@example.com"].iloc[0]
    assert state_of(broken["1"]) == "failed"


def test_the_signup_filters_narrow_the_list_on_the_server(seeded, open_app):
    at = open_app("pages/signups.py")
    at.multiselect(key="f_segments").select("URGENT").run()
    assert sorted(at.dataframe(key="signups_table").value["Email"]) == ["broken@example.com", "uma@example.com"]
    at.text_input(key="f_search").input("Bea").run()
    assert list(at.dataframe(key="signups_table").value["Email"]) == ["broken@example.com"]
    at.segmented_control(key="f_audience").set_value("test").run()
    assert not at.dataframe and "No contacts match" in page_text(at)


def test_the_signup_filters_are_still_set_after_a_visit_to_another_page(seeded, open_app):
    # Streamlit forgets a widget's value once a run does not draw it, so a trip to Sends to retry
    # a failure came back to every contact, the marketer's filters gone.
    at = open_app("pages/signups.py")
    at.multiselect(key="f_segments").select("URGENT").run()
    at.text_input(key="f_search").input("Bea").run()
    at.checkbox(key="f_failed").check().run()
    at.switch_page("pages/sends.py").run()
    at.switch_page("pages/signups.py").run()
    assert at.multiselect(key="f_segments").value == ["URGENT"]
    assert at.text_input(key="f_search").value == "Bea" and at.checkbox(key="f_failed").value
    assert list(at.dataframe(key="signups_table").value["Email"]) == ["broken@example.com"]


def test_a_new_search_starts_the_signups_list_again_at_its_first_page(make_settings, open_app):
    # Streamlit keeps a pager's page while it still exists: page 2 of every contact became page 2 of the
    # search, and its first 50 matches went unseen.
    services = build_services(make_settings(), migrate=True)
    try:
        enroll_now(services, [signup_request(email=f"{who}{n:03}@example.com")
                              for who in ("ann", "bob") for n in range(60)])
    finally:
        services.close()
    fresh = open_app("pages/signups.py")
    first_page = list(fresh.text_input(key="f_search").input("bob").run().dataframe(key="signups_table").value["Email"])
    at = open_app("pages/signups.py")
    at.session_state["signups_page"] = 2
    at.run()
    assert len(at.dataframe(key="signups_table").value) == 50  # 120 contacts: page 2 of 3

    at.text_input(key="f_search").input("bob").run()

    assert len(first_page) == 50 and list(at.dataframe(key="signups_table").value["Email"]) == first_page


def test_an_empty_signups_list_on_the_first_day_does_not_speak_of_filters(open_app):
    at = open_app("pages/signups.py")
    assert "Nobody has signed up yet." in page_text(at)
    assert "fewer filters" not in page_text(at), "no filter is set"
    at.text_input(key="f_search").input("   ").run()
    assert "Nobody has signed up yet." in page_text(at), "a search of spaces filters nothing"
    at.text_input(key="f_search").input("ada").run()
    assert "No contacts match. Try fewer filters" in page_text(at)


def test_a_sequence_with_a_failed_step_says_so_and_the_filter_lists_only_such_people(seeded, open_app):
    at = open_app("pages/signups.py")
    table = at.dataframe(key="signups_table").value
    statuses = dict(zip(table["Email"], table["Status"]))
    assert statuses["broken@example.com"] == "active · 1 failed" and statuses["casey@example.com"] == "active"
    at.checkbox(key="f_failed").check().run()
    assert list(at.dataframe(key="signups_table").value["Email"]) == ["broken@example.com"]


def test_a_completed_sequence_with_a_failed_step_has_a_warning_badge_not_a_green_one(seeded, open_app):
    broken = seeded["contacts"]["broken@example.com"]
    with db.write_transaction(seeded["services"].engine) as conn:  # as if every later step had gone
        conn.execute(sa.text("UPDATE enrollment SET status = 'completed' WHERE id = :e"), {"e": broken.enrollment_id})
    at = open_app("pages/signups.py")
    at.query_params["contact"] = broken.contact_id
    at.run()
    badges = "\n".join(m.value for m in at.markdown)
    assert ":orange-badge[completed · 1 failed]" in badges and ":green-badge[completed]" not in badges


def test_at_a_laptops_width_the_signup_date_is_sized_to_show_in_full_before_the_names(seeded, open_app):
    at = open_app("pages/signups.py")
    table = at.dataframe(key="signups_table")
    columns = list(table.value.columns)
    assert columns.index("Signed up") < columns.index("Name") < columns.index("Business")
    widths = {c.get("label"): c.get("width") for c in json.loads(table.proto.columns).values()}
    shown_date = table.value["Signed up"].iloc[0]
    assert widths["Signed up"] >= 8 * len(shown_date), f"{shown_date!r} needs about 8 px a character"


def test_the_legend_keeps_each_glyph_with_its_label(seeded, open_app):
    at = open_app("pages/signups.py")
    [caption] = [c for c in at.caption if "newest first" in c.value]
    legend = caption.value
    assert caption.proto.allow_html, "else the spans would show as text"
    entries = re.findall(r'<span style="white-space: nowrap">(!\[\w+\]\(data:[^)]+\) [\w ]+)</span>', legend)
    assert len(entries) == len(glyphs.LEGEND), "every glyph shares a no-wrap span with its label"
    assert any(re.fullmatch(r"!\[failed\]\(data:[^)]+\) failed", entry) for entry in entries)


def select_contact(at, email: str) -> None:
    """Select the Signups table's row of `email`, as a click on it does, and run."""
    emails = list(at.dataframe(key="signups_table").value["Email"])
    at.session_state["signups_table"] = {"selection": {"rows": [emails.index(email)], "columns": [], "cells": []}}
    at.run()


def test_selecting_a_contact_opens_its_timeline_with_the_reason_for_each_step(seeded, open_app):
    at = open_app("pages/signups.py")
    select_contact(at, "broken@example.com")
    text = page_text(at)
    assert "failed: 422 invalid `to` address" in text
    assert "waiting for step 2" in text


def test_the_open_timeline_stays_on_its_contact_when_new_signups_shift_the_rows(seeded, open_app):
    at = open_app("pages/signups.py")
    select_contact(at, "broken@example.com")
    chosen = at.query_params["contact"]
    enroll_now(seeded["services"], [signup_request(email="newcomer@example.com")])  # lands on top of the list

    at.run()

    assert at.query_params["contact"] == chosen == seeded["contacts"]["broken@example.com"].contact_id
    assert at.dataframe(key="signups_table").value["Email"].iloc[0] == "newcomer@example.com"
    assert "failed: 422 invalid `to` address" in page_text(at)  # still broken@'s timeline


def timeline_of_new_lead(make_settings, open_app, **fields):
    """Enroll one lead with these fields, open their timeline; the app and its markdown source."""
    services = build_services(make_settings(), migrate=True)
    try:
        [lead] = enroll_now(services, [signup_request(**fields)])
    finally:
        services.close()
    at = open_app("pages/signups.py")
    at.query_params["contact"] = lead.contact_id
    at.run()
    return at, "\n".join(m.value for m in [*at.markdown, *at.subheader])


def test_names_and_addresses_are_shown_literally_never_as_markdown(app_env, make_settings, open_app):
    at, source = timeline_of_new_lead(
        make_settings, open_app, email="x*y*z@example.com", first_name="[x](http://evil.example)",
        business_name=":red-badge[FAKE] $x^2$ see https://evil.example or www.evil.example")

    joiner = "\u2060"  # invisible; it keeps the markdown autolinker from making a bare address clickable
    assert rf"\[x\]\(http{joiner}\://evil\.example\)" in source and "](http" not in source
    assert r"\:red\-badge\[FAKE\] \$x^2\$" in source and ":red-badge[FAKE]" not in source
    assert "https://" not in source and "www." not in source and "www\\." not in source
    assert r"x\*y\*z@example\.com" in source
    text = page_text(at).replace(joiner, "")
    assert "[x](http://evil.example)" in text and ":red-badge[FAKE] $x^2$" in text  # what the marketer reads
    assert "see https://evil.example or www.evil.example" in text


def test_an_address_after_punctuation_or_in_a_character_reference_is_never_a_link(app_env, make_settings,
                                                                                 open_app):
    tricks = "'http://evil.example =http://evil.example Bob,https://evil.example x.www.evil.example " \
             "http&colon;//evil.example a&amp;b"
    at, source = timeline_of_new_lead(make_settings, open_app, email="tricks@example.com",
                                      first_name="Tom & Jerry's", business_name=tricks)

    readable = shown(source)  # what markdown makes of the escapes, before any autolinking
    assert not re.search(r"(?i)https?://|www\.", readable), "an address the autolinker would make clickable"
    assert r"Tom \& Jerry's" in source and r"a\&amp;b" in source and "http&colon;" not in source
    text = page_text(at).replace("\u2060", "")
    assert "Tom & Jerry's" in text and tricks in text  # what the marketer reads, exactly as typed


def test_the_timeline_says_why_a_sequence_stopped(seeded, open_app):
    at = open_app("pages/signups.py")
    at.query_params["contact"] = seeded["contacts"]["leaver@example.com"].contact_id
    at.run()
    assert "cancelled: unsubscribed on" in page_text(at)
    assert at.button(key="unsubscribe").disabled


def test_the_timeline_gives_the_time_of_an_unsubscribe_as_it_gives_every_other_time(seeded, open_app):
    at = open_app("pages/signups.py")
    at.query_params["contact"] = seeded["contacts"]["leaver@example.com"].contact_id
    text = page_text(at.run())
    assert not re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", text), "a raw date, unlike the other times shown"
    assert re.search(r"· unsubscribed on \d{1,2} [A-Z][a-z]{2} \d{2}:\d{2} UTC", text), "the sequence's reason"
    assert re.search(r"cancelled: unsubscribed on \d{1,2} [A-Z][a-z]{2} \d{2}:\d{2} UTC", text), "each later step's"


def test_the_sends_page_shows_the_providers_message_for_a_failed_send(seeded, open_app):
    at = open_app("pages/sends.py")
    failed = at.dataframe(key="failed_table").value
    assert list(failed["email"]) == ["broken@example.com"]
    assert "422 invalid" in failed["provider's message"].iloc[0]


def test_a_failed_sends_message_comes_right_after_whom_and_which_step_so_a_narrow_window_still_shows_it(
        seeded, open_app):
    # At 1024 px the table shows about its first four columns; the message used to be sixth, out of view.
    failed = open_app("pages/sends.py").dataframe(key="failed_table").value
    assert list(failed.columns)[:4] == ["failed", "email", "step", "provider's message"]


def test_the_selected_failed_sends_full_provider_message_is_shown_below_the_table_literally(seeded, open_app):
    long_message = ("Resend 422 validation_error: Invalid `to` field. The email address needs to follow the "
                    "`email@example.com` or `Name <email@example.com>` format. [see](http://x.example)")
    with db.write_transaction(seeded["services"].engine) as conn:
        conn.execute(sa.text("UPDATE send SET last_error = :m WHERE status = 'failed'"), {"m": long_message})
    at = open_app("pages/sends.py")
    assert "Select a row to read the provider's full message" in page_text(at)
    at.session_state["failed_table"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    assert f"broken@example.com, step 1: {long_message}" in page_text(at).replace("**", "").replace("\u2060", "")


def test_the_sends_caption_says_the_queue_holds_each_persons_next_email_of_all_those_scheduled(seeded, open_app):
    with db.read_transaction(seeded["services"].engine) as conn:
        counts = queries.queue_counts(conn, utcnow())
    text = page_text(open_app("pages/sends.py"))
    assert (f"{counts['due']} people have a next email queued ({counts['scheduled']} emails scheduled in all): "
            "0 due now, none more within the hour") in text


def test_one_load_of_the_sends_page_counts_each_list_once(seeded, open_app):
    at = open_app("pages/sends.py")
    statements: list[str] = []

    def record(conn, cursor, statement, *args) -> None:
        statements.append(" ".join(statement.split()))

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", record)
    try:
        at.run()
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", record)
    counts = [s for s in statements if s.startswith("SELECT count(") and "FROM send" in s]
    twice = sorted({s for s in counts if counts.count(s) > 1})
    assert twice == [], f"counted more than once: {twice}"
    # All of them: the queue's four (queued and scheduled in one, sending, failed, sent) and the sidebar's
    # emails in backoff. A pager counting its list again would be a different statement, so count them all.
    assert len(counts) == 5, counts
    assert not at.exception and at.dataframe(key="failed_table").value["email"].tolist() == ["broken@example.com"]


def test_an_overdue_queued_email_reads_as_overdue_not_in_so_long_ago(seeded, open_app):
    with db.write_transaction(seeded["services"].engine) as conn:
        conn.execute(sa.text("UPDATE send SET due_at = :due WHERE status = 'scheduled' AND ready"),
                     {"due": utcnow() - timedelta(minutes=5)})
    queued = open_app("pages/sends.py").dataframe[0].value
    assert list(queued.columns[:2]) == ["due", "when"]
    assert set(queued["when"]) == {"5 min ago"}


def test_the_templates_page_previews_every_step_for_every_segment(open_app):
    at = open_app("pages/templates.py")
    subjects = set()
    for segment in ("CRITICAL", "URGENT", "OPTIMIZE"):
        at.segmented_control(key="tpl_segment").set_value(segment).run()
        for step in range(1, 8):
            at.selectbox(key="tpl_step").set_value(step).run()
            assert not at.exception
            subjects.add(next(m.value for m in at.markdown if m.value.startswith("**Subject:**")))
            assert at.code[0].value.strip(), "the text part is shown"
    assert len(subjects) == 7, "each step has its own subject"


def test_the_test_signup_form_shows_the_segment_live(open_app):
    at = open_app("pages/test_signup.py")
    assert "OPTIMIZE" in page_text(at)
    at.number_input(key="ts_orange").set_value(2).run()
    assert "URGENT" in page_text(at)
    at.number_input(key="ts_red").set_value(2).run()
    assert "CRITICAL" in page_text(at)


def test_with_notion_and_discord_configured_their_health_is_shown(seeded, app_env, open_app):
    app_env(notion_token="secret-token", notion_email_sequence_db_id="db-id",
            discord_webhook_url="https://discord.example.com/api/webhooks/1/x")
    at = open_app("pages/settings.py")
    text = page_text(at)
    assert not at.exception, at.exception
    assert "pages linked" in text and "not configured" not in text
    assert "last write never" in text and "No alert posted in the last 30 days" in text
    assert "secret-token" not in text, "credentials are never shown"
    at = open_app("pages/signups.py")
    at.query_params["contact"] = seeded["contacts"]["casey@example.com"].contact_id
    at.run()
    assert "Notion mirror:" in page_text(at)


def test_the_csv_export_holds_exactly_the_filtered_contacts(seeded, app_env):
    build = contacts_csv(queries.ContactFilter(segments=("URGENT",)))
    exported = list(csv.DictReader(io.StringIO(build().decode("utf-8-sig"))))
    assert sorted(r["email"] for r in exported) == ["broken@example.com", "uma@example.com"]
    assert list(exported[0]) == queries.EXPORT_COLUMNS


def test_the_csv_export_opens_in_a_spreadsheet_with_names_beyond_ascii_intact(app_env, make_settings):
    services = build_services(make_settings(), migrate=True)
    try:
        enroll_now(services, [signup_request(email="zoe@example.com", first_name="Zoë", business_name="Łódź Logistics")])
    finally:
        services.close()
    data = contacts_csv(queries.ContactFilter())()
    assert data.startswith(codecs.BOM_UTF8)  # what tells Excel the file is UTF-8
    [row] = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
    assert (row["email"], row["first_name"], row["business_name"]) == ("zoe@example.com", "Zoë", "Łódź Logistics")


def test_the_csv_export_quotes_names_a_spreadsheet_would_run_as_formulas(app_env, make_settings):
    services = build_services(make_settings(), migrate=True)
    try:
        enroll_now(services, [signup_request(email="=1+2@example.com", first_name='=HYPERLINK("http://evil/","click")',
                                             business_name="+cmd|calc")])
    finally:
        services.close()
    [row] = csv.DictReader(io.StringIO(contacts_csv(queries.ContactFilter())().decode("utf-8-sig")))
    assert (row["email"], row["first_name"], row["business_name"]) == (
        "'=1+2@example.com", '\'=HYPERLINK("http://evil/","click")', "'+cmd|calc")


def test_a_provider_outage_shows_on_settings_and_in_the_sidebar(seeded, open_app):
    uma = seeded["contacts"]["uma@example.com"]
    back_off(seeded["services"].engine, uma.enrollment_id, 2, "Resend 503 application_error: Service unavailable")

    at = open_app("pages/settings.py")

    text = page_text(at).replace("**", "")
    assert "Sending is retrying. Resend can't take emails right now; 1 email waits and is retried" in text
    assert "Sending normally" not in text
    assert "Resend's last answer: Resend 503 application_error: Service unavailable" in text
    assert "Provider trouble. Resend can't take emails right now" in text  # the sidebar, on every page


@pytest.mark.parametrize("season_over", [False, True])
def test_the_templates_page_previews_by_default_the_version_that_goes_out_today(open_app, monkeypatch, season_over):
    # The dashboard reads the real clock: pin the campaign's answer for today instead.
    monkeypatch.setattr(type(CHRISTMAS_2025), "season_over", lambda self, at: season_over)
    at = open_app("pages/templates.py")
    at.selectbox(key="tpl_step").set_value(3).run()
    assert at.toggle(key="tpl_after_season").value is season_over
    subject = next(m.value for m in at.markdown if m.value.startswith("**Subject:**"))
    assert shown(subject) == f"**Subject:** {CHRISTMAS_2025.step(3).subject_for(season_over)}"


def test_the_templates_page_names_the_steps_whose_copy_changes_after_the_season(open_app):
    changed = []
    for number in CHRISTMAS_2025.step_numbers:
        before, after = (render_step(CHRISTMAS_2025.step(number), sample_context("CRITICAL", season_over=over),
                                     unsubscribe_url="u", postal_address="p") for over in (False, True))
        if (before.subject, before.text) != (after.subject, after.text):
            changed.append(str(number))
    named = ", ".join(changed[:-1]) + " and " + changed[-1]
    assert f"steps {named} read differently" in open_app("pages/templates.py").toggle(key="tpl_after_season").help


def test_the_audit_trail_counts_one_event_in_the_singular(seeded, open_app):
    at = open_app("pages/settings.py")
    at.text_input(key="audit_kind").input("unsubscribed").run()
    assert "1 event, newest first" in page_text(at)
