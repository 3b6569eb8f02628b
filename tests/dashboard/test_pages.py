"""Every page renders on an empty and on a populated database, on SQLite and on PostgreSQL."""

import pytest

from tests.dashboard.conftest import PAGES


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_an_empty_database(open_app, page):
    at = open_app(page)
    assert not at.exception, at.exception
    assert at.title, "every page has a title"


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_a_populated_database(seeded, open_app, page):
    at = open_app(page)
    assert not at.exception, at.exception


def test_the_overview_shows_kpis_with_deltas_and_charts(seeded, open_app):
    at = open_app()
    metrics = {m.label: (m.value, m.delta) for m in at.metric}
    assert metrics["Signups"] == ("5", "5")
    assert metrics["Critical"][0] == "1" and metrics["Urgent"][0] == "2" and metrics["Optimize"][0] == "2"
    assert metrics["Emails sent"][0] == "4" and metrics["Failed"][0] == "1"
    assert metrics["Unsubscribed"][0] == "1"
    assert len(at.get("vega_lite_chart")) == 3  # segment mix, signups per day, funnel
