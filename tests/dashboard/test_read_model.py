"""The dashboard's read model on SQLite and PostgreSQL: aggregates, filters, paging, timelines."""

from datetime import timedelta

import sqlalchemy as sa

from core import controls, db, heartbeat, queries
from core.heartbeat import HEARTBEAT_SECONDS
from core.intake import enroll_now
from core.tables import send_t
from core.timeutil import utcnow
from tests.support import signup_request


def read(seeded, query, *args, **kwargs):
    with db.read_transaction(seeded["services"].engine) as conn:
        return query(conn, *args, **kwargs)


def test_kpis_count_everything_and_what_changed_in_the_last_24_hours(seeded):
    figures = {k["key"]: (k["value"], k["delta"]) for k in read(seeded, queries.kpis, utcnow())}
    assert figures["signups"] == (5, 5)
    assert figures["segment_CRITICAL"] == (1, 1) and figures["segment_URGENT"] == (2, 2)
    assert figures["sent"] == (4, 4) and figures["failed"] == (1, 1)
    assert figures["unsubscribed"] == (1, 1) and figures["bounced"] == (0, 0)
    later = {k["key"]: k["delta"] for k in read(seeded, queries.kpis, utcnow() + timedelta(days=2))}
    assert later["signups"] == 0 and later["sent"] == 0, "a day later nothing is new"


def test_the_scheduled_figure_comes_with_how_many_of_them_are_due_within_a_day_not_a_change(seeded):
    now = utcnow()
    with db.read_transaction(seeded["services"].engine) as conn:
        due_at = list(conn.scalars(sa.select(send_t.c.due_at).where(send_t.c.status == "scheduled")))
    figures = {k["key"]: (k["value"], k["delta"]) for k in read(seeded, queries.kpis, now)}
    soon = sum(at <= now + timedelta(hours=24) for at in due_at)
    assert 0 < soon < len(due_at), "the seeded sequences have steps due within a day and later"
    assert figures["scheduled"] == (len(due_at), soon)
    later = {k["key"]: k["delta"] for k in read(seeded, queries.kpis, now + timedelta(days=30))}
    assert later["scheduled"] == len(due_at), "all of them are due by then"


def test_the_funnel_counts_each_stage_per_step(seeded):
    funnel = {(r["step"], r["stage"]): r["count"] for r in read(seeded, queries.funnel)}
    assert funnel[(1, "sent")] == 4 and funnel[(1, "delivered")] == 1 and funnel[(1, "clicked")] == 1
    assert funnel[(7, "scheduled")] == 4, "the unsubscribed contact's sends were cancelled"
    assert len(funnel) == 7 * len(queries.FUNNEL_STAGES)


def test_the_funnel_shows_failed_and_stopped_emails_counted_as_the_failed_kpi_counts_them(seeded):
    funnel = {(r["step"], r["stage"]): r["count"] for r in read(seeded, queries.funnel)}
    failed_kpi = next(k["value"] for k in read(seeded, queries.kpis, utcnow()) if k["key"] == "failed")
    assert funnel[(1, "failed")] == 1 == failed_kpi, "Bea's step 1 was refused"
    assert sum(n for (_, stage), n in funnel.items() if stage == "failed") == failed_kpi
    assert [funnel[(step, "cancelled or skipped")] for step in range(1, 8)] == [0] + [1] * 6, "Lee unsubscribed"
    with db.write_transaction(seeded["services"].engine) as conn:
        controls.unsubscribe_contact(conn, seeded["contacts"]["broken@example.com"].contact_id, actor="test",
                                     now=utcnow())
    overview = read(seeded, queries.overview_data, utcnow())
    after = {(r["step"], r["stage"]): r["count"] for r in overview["funnel"]}
    assert after[(1, "failed")] == 0 == next(k["value"] for k in overview["kpis"] if k["key"] == "failed"), \
        "a stopped person's failure needs nothing done: it leaves the KPI and the chart alike"


def test_signups_per_day_are_grouped_by_utc_day_and_segment(seeded):
    daily = read(seeded, queries.signups_per_day, utcnow(), days=7)
    day = (utcnow() - timedelta(hours=3)).date().isoformat()
    assert {(r["day"], r["segment"], r["signups"]) for r in daily} >= {(day, "CRITICAL", 1), (day, "URGENT", 2)}
    assert sum(r["signups"] for r in daily) == 5


def test_contacts_are_filtered_searched_and_paged_on_the_server(seeded):
    everyone = queries.ContactFilter()
    assert read(seeded, queries.count_contacts, everyone) == 5
    first = read(seeded, queries.contact_page, everyone, offset=0, limit=2)
    rest = read(seeded, queries.contact_page, everyone, offset=2, limit=10)
    assert len(first) == 2 and len(rest) == 3
    assert {r["email"] for r in first + rest} == set(seeded["contacts"])
    urgent = queries.ContactFilter(segments=("URGENT",))
    assert read(seeded, queries.count_contacts, urgent) == 2
    assert read(seeded, queries.count_contacts, queries.ContactFilter(search="ORDERLY")) == 1
    assert read(seeded, queries.count_contacts, queries.ContactFilter(search="100%_")) == 0
    assert read(seeded, queries.count_contacts, queries.ContactFilter(statuses=("unsubscribed",))) == 1
    assert read(seeded, queries.count_contacts, queries.ContactFilter(audience="test")) == 0
    today = utcnow().date()
    assert read(seeded, queries.count_contacts, queries.ContactFilter(signed_up_to=today - timedelta(days=2))) == 0


def test_the_search_ignores_case_in_every_alphabet_not_only_in_ascii(seeded):
    enroll_now(seeded["services"], [signup_request(email="zoë@example.com", first_name="Łukasz",
                                                   business_name="Søren's Smørrebrød")])
    for term in ("ŁUKASZ", "łukasz", "SMØRREBRØD", "ZOË@", "Zoë"):
        assert read(seeded, queries.count_contacts, queries.ContactFilter(search=term)) == 1, term
    assert read(seeded, queries.count_contacts, queries.ContactFilter(search="ø%_")) == 0, "wildcards stay literal"


def test_a_search_or_audit_filter_holding_a_nul_finds_nothing_instead_of_failing(seeded):
    # PostgreSQL refuses NUL in any text it is sent, and nothing stored holds one: the page showed an exception.
    nul = queries.ContactFilter(search="casey\x00")
    assert read(seeded, queries.count_contacts, nul) == 0
    assert read(seeded, queries.contact_page, nul, offset=0, limit=10) == []
    assert read(seeded, queries.audit_count, kind="unsub\x00scribed") == 0
    assert read(seeded, queries.audit_page, offset=0, limit=5, actor="\x00") == []


def test_people_with_a_failed_step_are_found_until_a_resend_replaces_it(seeded):
    failing = queries.ContactFilter(failed_step=True)
    assert read(seeded, queries.count_contacts, failing) == 1
    [bea] = read(seeded, queries.contact_page, failing, offset=0, limit=50)
    assert bea["email"] == "broken@example.com" and bea["failed_steps"] == 1
    assert read(seeded, queries.count_contacts, queries.ContactFilter(segments=("URGENT",), failed_step=True)) == 1
    assert read(seeded, queries.count_contacts, queries.ContactFilter(segments=("OPTIMIZE",), failed_step=True)) == 0
    exported = read(seeded, lambda conn: list(queries.export_rows(conn, where=failing)))
    assert [r["email"] for r in exported] == ["broken@example.com"]
    broken = seeded["contacts"]["broken@example.com"]
    assert read(seeded, queries.contact_detail, broken.contact_id, utcnow())["failed_steps"] == 1
    with db.write_transaction(seeded["services"].engine) as conn:
        controls.resend_step(conn, broken.enrollment_id, 1, actor="test", now=utcnow())
    assert read(seeded, queries.count_contacts, failing) == 0, "the resend is the step's fate now"
    assert read(seeded, queries.contact_detail, broken.contact_id, utcnow())["failed_steps"] == 0


def test_the_filtered_export_streams_only_matching_contacts_with_their_step_statuses(seeded):
    exported = list(read(seeded, lambda conn: list(queries.export_rows(
        conn, chunk=2, where=queries.ContactFilter(segments=("URGENT", "CRITICAL"))))))
    assert sorted(r["email"] for r in exported) == ["broken@example.com", "casey@example.com", "uma@example.com"]
    broken = next(r for r in exported if r["email"] == "broken@example.com")
    assert broken["step_1"] == "failed" and broken["step_2"] == "scheduled"
    assert list(broken) == queries.EXPORT_COLUMNS


def test_a_contact_id_holding_a_nul_is_no_contact_rather_than_an_error(seeded):
    # It comes from the page's URL (?contact=%00); PostgreSQL refuses NUL in any text it is sent.
    assert read(seeded, queries.contact_detail, "\x00", utcnow()) is None


def test_a_timeline_explains_each_step(seeded):
    contact = seeded["contacts"]["casey@example.com"].contact_id
    detail = read(seeded, queries.contact_detail, contact, utcnow())
    first, second, third = detail["steps"][:3]
    assert first.state == "clicked" and any(f.startswith("provider id fake-") for f in first.facts)
    assert second.state == "due" and second.headline.startswith("due")
    assert third.headline.startswith("waiting for step 2")
    assert read(seeded, queries.contact_detail, "no-such-contact", utcnow()) is None


def test_queue_lists_are_read_in_order_and_counted(seeded):
    counts = read(seeded, queries.queue_counts, utcnow())
    assert counts["failed"] == 1 and counts["sent"] == 4 and counts["sending"] == 0
    due = read(seeded, queries.queue_list, "due", now=utcnow(), limit=50)
    assert len(due) == counts["due"] and [r["due_at"] for r in due] == sorted(r["due_at"] for r in due)
    [failed] = read(seeded, queries.queue_list, "failed", now=utcnow())
    assert len(read(seeded, queries.queue_list, "sent", now=utcnow())) == 4
    assert read(seeded, queries.queue_list, "sent", now=utcnow() + timedelta(days=2)) == []
    assert failed["email"] == "broken@example.com" and "422" in failed["last_error"]


def test_the_queue_counts_each_persons_next_email_and_every_email_scheduled_and_never_counts_one_twice(seeded):
    with db.read_transaction(seeded["services"].engine) as conn:
        scheduled = conn.scalar(sa.text("SELECT count(*) FROM send WHERE status = 'scheduled'"))
    next_due = read(seeded, queries.queue_list, "due", now=utcnow())[0]["due_at"]  # soonest first
    counts = read(seeded, queries.queue_counts, next_due)
    assert counts["scheduled"] == scheduled > counts["due"] > 0, "later steps are scheduled but not queued"
    assert counts["due_now"] >= 1 and counts["due_now"] + counts["due_next_hour"] <= counts["due"]
    before = read(seeded, queries.queue_counts, next_due - timedelta(minutes=30))
    assert before["due_now"] == 0 and before["due_next_hour"] == counts["due_now"], "what is due now is not 'more'"


def test_the_audit_trail_pages_newest_first(seeded):
    total = read(seeded, queries.audit_count)
    page = read(seeded, queries.audit_page, offset=0, limit=3)
    assert total >= 5 and len(page) == 3 and page[0]["id"] > page[-1]["id"]
    assert read(seeded, queries.audit_count, kind="unsubscribed") == 1
    # Typed as the page shows kinds, spaces and capitals alike.
    assert read(seeded, queries.audit_count, kind=" Send  Sent ") == read(seeded, queries.audit_count, kind="send_sent") > 0
    unsubscribed = read(seeded, queries.audit_page, offset=0, limit=5, kind="unsubscribed")
    assert [e["email"] for e in unsubscribed] == ["leaver@example.com"]  # whose event it is
    # Part of a kind or of who did it finds every match: "sent" covers send_sent; "unsubscrib" the unsubscribe.
    assert read(seeded, queries.audit_count, kind="sent") >= read(seeded, queries.audit_count, kind="send_sent") > 0
    assert read(seeded, queries.audit_count, kind="unsubscrib") == 1
    assert read(seeded, queries.audit_count, kind="100%_") == 0  # typed wildcards match only themselves
    actors = {e["actor"] for e in read(seeded, queries.audit_page, offset=0, limit=100)}
    some = sorted(actors)[0]
    assert read(seeded, queries.audit_count, actor=some[1:-1].upper()) >= read(seeded, queries.audit_count, actor=some)


def test_the_heartbeat_is_alive_within_two_intervals():
    now = utcnow()
    assert queries.heartbeat(now - timedelta(seconds=9), now, 5) == (True, 9.0)
    assert queries.heartbeat(now - timedelta(seconds=11), now, 5)[0] is False
    assert queries.heartbeat(None, now, 5) == (False, None)
    # A beat from days ahead (a time-travel run, a fast clock on another host) is no sign of life now.
    assert queries.heartbeat(now + timedelta(days=3), now, 5)[0] is False
    assert queries.heartbeat(now + timedelta(seconds=2), now, 5) == (True, 0.0)


def test_a_beat_dated_in_the_future_neither_passes_for_a_live_worker_nor_hides_one(seeded):
    services = seeded["services"]
    now = utcnow()
    with db.write_transaction(services.engine) as conn:
        heartbeat.beat(conn, "old-time-travel-run", now + timedelta(days=20))
    state = read(seeded, queries.system_state, now)
    assert queries.heartbeat(state.worker_last_seen, now, HEARTBEAT_SECONDS)[0] is True  # the live test-worker
    with db.write_transaction(services.engine) as conn:
        conn.execute(sa.text("DELETE FROM worker WHERE id = 'test-worker'"))
    assert read(seeded, queries.system_state, now).worker_last_seen is None  # nothing alive to show
