"""The pure translation between an enrollment's state and a Notion page's properties."""

from datetime import UTC, datetime

from core.notion import properties as P
from core.notion.port import NotionPage

AT = datetime(2025, 12, 2, 9, 30, tzinfo=UTC)


def state(**changes) -> P.EnrollmentState:
    values = dict(enrollment_id="e1", contact_id="c1", email="alex@example.com", first_name="Alex",
                  business_name="Acme Ltd", segment="CRITICAL", campaign="Christmas 2025", status="active",
                  sent_steps=frozenset({1, 2}), last_sent_at=AT, next_due_at=datetime(2025, 12, 4, 9, tzinfo=UTC))
    values.update(changes)
    return P.EnrollmentState(**values)


def returned(properties: dict) -> dict:
    """Written values in the shape Notion returns them on a page."""
    out = {}
    for name, value in properties.items():
        kind, raw = next(iter(value.items()))
        if kind in ("title", "rich_text"):
            raw = [{**item, "plain_text": item["text"]["content"]} for item in raw]
        out[name] = {"type": kind, kind: raw}
    return out


def test_every_expected_column_is_written_with_its_notion_type():
    props = P.page_properties(state(), P.EXPECTED)

    assert props["Name"] == {"title": [{"type": "text", "text": {"content": "Alex — Acme Ltd"}}]}
    assert props["Email"] == {"email": "alex@example.com"}
    assert props["Segment"] == {"select": {"name": "CRITICAL"}}
    assert props["Status"] == {"select": {"name": "active"}}
    assert props["Email 1 Sent"] == {"checkbox": True} and props["Email 3 Sent"] == {"checkbox": False}
    assert props["Last Email Sent"] == {"date": {"start": "2025-12-02T09:30:00+00:00"}}
    assert set(props) == set(P.EXPECTED) - {"Stop"}


def test_the_stop_box_belongs_to_the_marketer_and_is_never_written():
    assert "Stop" not in P.page_properties(state(status="cancelled"), P.EXPECTED)


def test_values_follow_the_type_a_column_really_has_in_an_older_database():
    schema = {"Name": "title", "Email": "rich_text", "Segment": "rich_text", "Email 1 Sent": "checkbox"}

    props = P.page_properties(state(), schema)

    assert props["Email"] == {"rich_text": [{"type": "text", "text": {"content": "alex@example.com"}}]}
    assert props["Segment"] == {"rich_text": [{"type": "text", "text": {"content": "CRITICAL"}}]}
    assert set(props) == set(schema)


def test_a_column_whose_type_cannot_hold_the_value_is_left_out():
    props = P.page_properties(state(), {"Email 1 Sent": "rich_text", "Last Email Sent": "checkbox"})

    assert props == {}


def test_a_notion_status_column_is_left_out_since_the_api_cannot_add_its_options():
    props = P.page_properties(state(), {"Name": "title", "Email": "email", "Status": "status"})

    assert set(props) == {"Name", "Email"}  # the page is still written, without the one column it would refuse


def test_empty_values_clear_the_column_instead_of_failing():
    props = P.page_properties(state(first_name=None, last_sent_at=None, next_due_at=None), P.EXPECTED)

    assert props["First Name"] == {"rich_text": []}
    assert props["Last Email Sent"] == {"date": None}
    assert props["Name"]["title"][0]["text"]["content"] == "Acme Ltd"


def test_the_business_relation_is_written_only_when_a_record_was_found():
    schema = {**P.EXPECTED, "Business": "relation"}

    assert "Business" not in P.page_properties(state(), schema)
    assert P.page_properties(state(), schema, "biz-1")["Business"] == {"relation": [{"id": "biz-1"}]}


def test_a_page_reads_back_into_the_row_the_import_and_stop_need():
    written = P.page_properties(state(email="Alex@Example.com"), P.EXPECTED)
    page = NotionPage("p1", created_time=AT, properties=returned({**written, "Stop": {"checkbox": True}}))

    row = P.parse_row(page)

    assert row.email == "alex@example.com"
    assert row.sent_steps == {1, 2}
    assert row.stop is True and row.status == "active" and row.segment == "CRITICAL"
    assert row.signup_at == AT


def test_a_signup_date_column_wins_over_the_page_creation_time():
    props = returned({"Email": {"email": "a@example.com"}, "Signup Date": {"date": {"start": "2025-11-20"}}})

    row = P.parse_row(NotionPage("p1", created_time=AT, properties=props))

    assert row.signup_at == datetime(2025, 11, 20, tzinfo=UTC)


def test_an_unknown_segment_reads_as_none_and_an_address_in_the_title_is_found():
    props = returned({"Name": {"title": [{"type": "text", "text": {"content": "bo@example.com"}}]},
                      "Segment": {"select": {"name": "warm"}}})

    row = P.parse_row(NotionPage("p1", properties=props))

    assert row.email == "bo@example.com" and row.segment is None and row.sent_steps == frozenset()


def test_the_fingerprint_changes_only_when_the_written_values_change():
    first = P.fingerprint(P.page_properties(state(), P.EXPECTED))

    assert first == P.fingerprint(P.page_properties(state(), P.EXPECTED))
    assert first != P.fingerprint(P.page_properties(state(sent_steps=frozenset({1, 2, 3})), P.EXPECTED))


def test_filters_match_the_column_type():
    assert P.equals_filter("Email", "email", "a@example.com") == {
        "property": "Email", "email": {"equals": "a@example.com"}}
    assert P.equals_filter("Stop", "checkbox", True) == {"property": "Stop", "checkbox": {"equals": True}}
