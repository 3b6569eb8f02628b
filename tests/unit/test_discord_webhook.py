"""The Discord webhook adapter over httpx.MockTransport: Discord's answers translated into ours."""

import json

import httpx
import pytest

from core.alerts import ChannelDownError, PermanentAlertError, TransientAlertError
from core.discord import DiscordWebhook

URL = "https://discord.test/api/webhooks/1/secret-token"


def webhook(*answers: httpx.Response, seen: list | None = None) -> DiscordWebhook:
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return queue.pop(0)

    return DiscordWebhook(URL, http=httpx.Client(transport=httpx.MockTransport(handler)))


def test_a_message_is_posted_as_json_to_the_webhook_url():
    seen: list[httpx.Request] = []

    webhook(httpx.Response(204), seen=seen).post({"content": "hello"})

    assert str(seen[0].url) == "https://discord.test/api/v10/webhooks/1/secret-token" and seen[0].method == "POST"
    assert json.loads(seen[0].content) == {"content": "hello"}


def test_a_429_is_transient_with_the_json_retry_after_in_seconds():
    answer = httpx.Response(429, json={"message": "You are being rate limited.", "retry_after": 0.75, "global": False})

    with pytest.raises(TransientAlertError) as caught:
        webhook(answer).post({"content": "x"})

    assert caught.value.status == 429 and caught.value.retry_after == 0.75


def test_a_429_without_a_body_falls_back_to_the_retry_after_header():
    with pytest.raises(TransientAlertError) as caught:
        webhook(httpx.Response(429, headers={"Retry-After": "3"})).post({"content": "x"})

    assert caught.value.retry_after == 3.0


def test_a_503_retry_after_given_as_an_http_date_counts_from_the_answers_date():
    answer = httpx.Response(503, headers={"Retry-After": "Mon, 01 Dec 2025 09:00:45 GMT",
                                          "Date": "Mon, 01 Dec 2025 09:00:00 GMT"})

    with pytest.raises(TransientAlertError) as caught:
        webhook(answer).post({"content": "x"})

    assert caught.value.retry_after == 45.0


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient(status):
    with pytest.raises(TransientAlertError):
        webhook(httpx.Response(status)).post({"content": "x"})


def test_a_refused_message_is_permanent():
    with pytest.raises(PermanentAlertError):
        webhook(httpx.Response(400, json={"message": "Invalid Form Body", "code": 50035})).post({"content": "x"})


@pytest.mark.parametrize("status", [401, 403, 404])
def test_a_deleted_or_wrong_webhook_takes_the_whole_channel_down_not_one_alert(status):
    with pytest.raises(ChannelDownError, match="DISCORD_WEBHOOK_URL"):
        webhook(httpx.Response(status, json={"message": "Unknown Webhook", "code": 10015})).post({"content": "x"})


def test_network_failures_are_transient_and_never_reveal_the_webhook_token():
    def refuse(request):
        raise httpx.ConnectError("connection refused", request=request)

    sink = DiscordWebhook(URL, http=httpx.Client(transport=httpx.MockTransport(refuse)))

    with pytest.raises(TransientAlertError) as caught:
        sink.post({"content": "x"})

    assert "secret-token" not in str(caught.value)


@pytest.mark.parametrize("body, said", [
    ({"message": "Invalid Form Body", "code": 50035, "errors": {"embeds": {"0": {"url": {"_errors": [
        {"code": "URL_TYPE_INVALID_URL", "message": "Not a well formed URL."}]}}}}}, "Not a well formed URL."),
    ({"embeds": ["0"]}, '{"embeds": ["0"]}'),
])
def test_a_refused_message_says_what_discord_refused_not_just_bad_request(body, said):
    # Discord's 400 names the field only in `errors`, or (for a webhook's embed) in a bare body.
    with pytest.raises(PermanentAlertError) as caught:
        webhook(httpx.Response(400, json=body)).post({"content": "x"})

    assert said in str(caught.value)


@pytest.mark.parametrize(("given", "posted"), [
    ("https://discord.com/api/webhooks/1/t?thread_id=9", "https://discord.com/api/v10/webhooks/1/t?thread_id=9"),
    ("https://discord.com/api/v9/webhooks/1/t", "https://discord.com/api/v9/webhooks/1/t"),
    ("https://hooks.example.org/relay/1/t", "https://hooks.example.org/relay/1/t"),
])
def test_the_webhook_is_posted_to_under_api_v10_unless_its_url_names_a_version(given, posted):
    seen: list[httpx.Request] = []
    hook = DiscordWebhook(given, http=httpx.Client(transport=httpx.MockTransport(
        lambda request: seen.append(request) or httpx.Response(204))))

    hook.post({"content": "x"})

    assert str(seen[0].url) == posted
