"""FakeNotion behaves like the Notion adapter where the mirror depends on it."""

import pytest

from core.notion.errors import NotionRequestError, NotionUnavailable
from core.notion.port import NotionMirror
from core.testing_side import FakeNotion


def test_the_fake_is_a_notion_mirror():
    assert isinstance(FakeNotion(), NotionMirror)


def test_a_created_page_is_found_by_its_email_and_reads_back_its_values():
    notion = FakeNotion()

    page = notion.create_page({"Email": {"email": "a@example.com"}, "Email 1 Sent": {"checkbox": True}})

    assert [p.id for p in notion.find_pages(["A@example.com"])["a@example.com"]] == [page.id]
    assert notion.values(page.id)["Email 1 Sent"] is True


def test_writing_a_column_that_does_not_exist_is_refused_like_notion_does():
    notion = FakeNotion({"Name": "title", "Email": "email"})

    with pytest.raises(NotionRequestError, match="Stop is not a property"):
        notion.create_page({"Stop": {"checkbox": True}})


def test_updating_a_page_that_is_gone_says_the_page_is_gone():
    with pytest.raises(NotionRequestError) as caught:
        FakeNotion().update_page("page-404", {})

    assert caught.value.page_gone


def test_a_ticked_stop_box_shows_up_only_while_the_status_reads_active():
    notion = FakeNotion()
    active = notion.add_page({"Email": "a@example.com", "Status": "active"})
    done = notion.add_page({"Email": "b@example.com", "Status": "completed"})
    notion.tick(active)
    notion.tick(done)

    assert [p.id for p in notion.stopped_pages()] == [active]


def test_scripted_failures_are_raised_once_each_in_order():
    notion = FakeNotion()
    notion.fail_next(NotionUnavailable("down"), NotionUnavailable("still down"))

    for message in ("down", "still down"):
        with pytest.raises(NotionUnavailable, match=message):
            notion.schema()
    assert notion.schema()["Stop"] == "checkbox"
    assert notion.calls == ["schema", "schema", "schema"]


def test_a_failure_scripted_for_one_method_waits_for_that_method():
    notion = FakeNotion()
    notion.fail_next(NotionUnavailable("down"), on="create_page")

    notion.schema()
    with pytest.raises(NotionUnavailable):
        notion.create_page({})


def test_businesses_are_found_by_email_only_when_businessx_is_configured():
    assert FakeNotion().find_business("a@example.com") is None
    assert FakeNotion().business_source_id() is None
    linked = FakeNotion(businesses={"a@example.com": "biz-1"})
    assert linked.find_business("A@example.com") == "biz-1"
    assert linked.schema()["Business"] == "relation"
