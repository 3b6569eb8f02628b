"""FakeDiscord, and the pure parts of alerting: message shapes and the signature-failure watch."""

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from core.alerts import AlertSink, SignatureFailureWatch, TransientAlertError, critical_lead_message, ops_message
from core.testing_side import FakeDiscord

LEAD = SimpleNamespace(contact_id="c1", email="casey@example.com", first_name="Casey", business_name="Crumbling Co",
                       is_test=False, red_systems=3, orange_systems=1)


def test_the_fake_is_an_alert_sink_that_keeps_what_it_accepted():
    discord = FakeDiscord()

    discord.post(ops_message("circuit_breaker", "paused"))

    assert isinstance(discord, AlertSink)
    assert discord.titles() == ["Sending paused by the circuit breaker"]


def test_the_fake_replays_scripted_failures_and_keeps_nothing_for_them():
    discord = FakeDiscord()
    discord.fail_next(TransientAlertError("429", retry_after=1))

    with pytest.raises(TransientAlertError):
        discord.post({"content": "x"})
    discord.post({"content": "y"})

    assert discord.messages == [{"content": "y"}] and discord.calls == ["post", "post"]


def test_a_critical_lead_embed_names_the_lead_their_business_counts_and_dashboard_link():
    message = critical_lead_message(LEAD, "https://dash.example.com/")

    embed = message["embeds"][0]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert embed["title"] == "CRITICAL lead: Casey"
    assert fields == {"Name": "Casey", "Business": "Crumbling Co", "Email": "casey@example.com",
                      "Red systems": "3", "Orange systems": "1"}
    assert embed["url"] == "https://dash.example.com/signups?contact=c1"
    assert embed["color"] == 0xE02424


def test_a_lead_cannot_ping_everyone_through_their_name():
    lead = SimpleNamespace(**{**LEAD.__dict__, "first_name": "@everyone"})

    assert critical_lead_message(lead, "http://d")["allowed_mentions"] == {"parse": []}


def test_missing_names_fall_back_so_discord_never_gets_an_empty_field():
    lead = SimpleNamespace(**{**LEAD.__dict__, "first_name": None, "business_name": None, "red_systems": None})

    embed = critical_lead_message(lead, "http://d")["embeds"][0]

    assert embed["title"] == "CRITICAL lead: casey@example.com"
    assert all(f["value"] for f in embed["fields"])


def test_the_signature_watch_fires_once_when_a_burst_crosses_the_threshold():
    watch = SignatureFailureWatch(threshold=3, window=timedelta(minutes=5))
    start = datetime(2025, 12, 1, 9, tzinfo=UTC)

    fired = [watch.record(start + timedelta(seconds=i)) for i in range(5)]

    assert fired == [False, False, True, False, False]


def test_failures_spread_wider_than_the_window_never_fire():
    watch = SignatureFailureWatch(threshold=3, window=timedelta(minutes=5))
    start = datetime(2025, 12, 1, 9, tzinfo=UTC)

    assert not any(watch.record(start + timedelta(minutes=4 * i)) for i in range(10))


@pytest.mark.parametrize("name", ["_" * 200, "a" + "*" * 199, "Zoë " + "[x]" * 60])
def test_a_long_name_is_cut_whole_escapes_first_never_leaving_a_stray_backslash(name):
    lead = SimpleNamespace(**{**LEAD.__dict__, "first_name": name, "business_name": name})

    embed = critical_lead_message(lead, "http://d")["embeds"][0]
    texts = [embed["title"], *(f["value"] for f in embed["fields"])]

    assert len(embed["title"]) <= 256 and embed["title"].endswith("…")
    for text in texts:
        body = text.removesuffix("…")
        trailing = len(body) - len(body.rstrip("\\"))
        assert trailing % 2 == 0, text[-10:]  # a lone "\" would show, or escape the "…"


@pytest.mark.parametrize("embed", [
    {"description": "x" * 4097},
    {"fields": [{"name": "n", "value": "v"}] * 26},
    {"fields": [{"name": "n" * 257, "value": "v"}]},
    {"title": "t" * 200, "fields": [{"name": "n", "value": "v" * 1024}] * 6},  # over 6,000 in all
])
def test_the_discord_stand_in_refuses_what_discord_refuses(embed):
    from tests.standins.discord_api import _problem

    assert _problem({"embeds": [embed]}) is not None
    assert _problem({"embeds": [{"title": "ok", "description": "d"}]}) is None


def test_a_critical_alert_for_the_longest_names_stays_inside_discords_limits():
    from tests.standins.discord_api import _problem

    lead = SimpleNamespace(**{**vars(LEAD), "first_name": "_*" * 100, "business_name": "[]" * 100,
                              "email": "a" * 64 + "@" + "b" * 185 + ".com"})

    assert _problem(critical_lead_message(lead, "https://dash.example.com" + "/x" * 500)) is None
