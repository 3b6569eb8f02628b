"""The AlertSink adapter for a Discord webhook: one httpx POST, Discord's answers translated into ours.

The webhook URL carries its token, so it is never logged or put in an error message. Discord says in
X-RateLimit-* headers when a webhook's window is spent; the next post waits for it rather than be
refused (Discord asks clients to, and bans addresses that collect too many refusals).
"""

import json
import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import httpx

from core.alerts import AlertError, AlertSink, ChannelDownError, PermanentAlertError, TransientAlertError
from core.ratelimit import retry_after_seconds

# Discord's code for a post to a forum channel's webhook naming no thread (discord.com/developers/docs/topics/
# opcodes-and-status-codes#json); its docs for Execute Webhook ask for thread_id or thread_name there.
_FORUM_NEEDS_THREAD = 220001
API_VERSION = "v10"  # Discord's current version (discord.com/developers/docs/reference#api-versioning)


class DiscordWebhook(AlertSink):
    """Posts messages (embeds) to DISCORD_WEBHOOK_URL."""

    name = "discord"

    def __init__(self, url: str, *, timeout: float = 10.0, http: httpx.Client | None = None, max_wait: float = 5.0,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self._url = versioned(url)
        self._http = http or httpx.Client()
        self._timeout = timeout
        self._max_wait, self._clock, self._sleep = max_wait, clock, sleep
        self._window_ends = float("-inf")  # when the webhook's spent rate-limit window resets

    def close(self) -> None:
        self._http.close()

    def post(self, message: dict) -> None:
        wait = self._window_ends - self._clock()
        if wait > self._max_wait:  # not slept through: the alert job waits instead, holding no thread
            raise TransientAlertError(f"Discord rate limit: the webhook's window resets in {wait:.0f}s",
                                      status=429, retry_after=wait)
        if wait > 0:
            self._sleep(wait)
        try:
            response = self._http.post(self._url, json=message, timeout=self._timeout)
        except httpx.TimeoutException as exc:
            raise TransientAlertError("Discord did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise TransientAlertError(f"cannot reach Discord: {exc.__class__.__name__}") from exc
        self._observe(response.headers)
        if response.is_success:
            return
        raise translate(response)

    def _observe(self, headers: httpx.Headers) -> None:
        if headers.get("x-ratelimit-remaining", "").strip() == "0":
            reset_after = retry_after_seconds(headers.get("x-ratelimit-reset-after"))
            if reset_after is not None:
                self._window_ends = max(self._window_ends, self._clock() + reset_after)


def versioned(url: str) -> str:
    """The webhook under API v10. The address Discord's UI copies has no version, and Discord serves that as
    its deprecated default, whose 429 counts `retry_after` in milliseconds (discord-api-docs#4722): 1.5 s
    read as 1,500 s held every alert for 25 minutes. A URL that names a version is left as given."""
    parts = urlsplit(url)
    if not parts.path.startswith("/api/webhooks/"):
        return url
    return urlunsplit(parts._replace(path="/api/" + API_VERSION + parts.path.removeprefix("/api")))


def translate(response: httpx.Response) -> AlertError:
    """429 and 5xx: retry (a 429 after its JSON `retry_after` seconds); 401, 403 and 404, or a forum channel's
    webhook: the webhook itself is gone or wrong, so the channel waits; any other 4xx: this message is refused."""
    status = response.status_code
    detail = _message(response)
    if status in (401, 403, 404):
        return ChannelDownError(f"Discord {status}: {detail} (check DISCORD_WEBHOOK_URL)", status=status)
    if _body(response).get("code") == _FORUM_NEEDS_THREAD:  # every post is refused alike until the setup changes
        return ChannelDownError(f"Discord {status}: {detail} (the webhook is in a forum channel: make it in a text "
                                "channel, or add ?thread_id=<post id> to DISCORD_WEBHOOK_URL)", status=status)
    if status == 429:
        return TransientAlertError(f"Discord 429 rate limited: {detail}", status=status,
                                   retry_after=_retry_after(response))
    if status >= 500:
        return TransientAlertError(f"Discord {status}: {detail}", status=status, retry_after=_retry_after(response))
    return PermanentAlertError(f"Discord {status}: {detail}", status=status)


def _body(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _message(response: httpx.Response) -> str:
    # A refused message names its field only in `errors` ("Invalid Form Body" alone says nothing), and a
    # webhook's refused embed may come back as a bare {"embeds": ["0"]}: the operator needs that part.
    body = _body(response)
    said = body.get("message")
    extra = body.get("errors") if said else body
    detail = " ".join(str(p) for p in (said, json.dumps(extra, ensure_ascii=False) if extra else None) if p)
    return (detail or response.reason_phrase or "no detail")[:300]


def _retry_after(response: httpx.Response) -> float | None:
    """Discord's JSON `retry_after` (seconds, may be fractional), else the Retry-After header (seconds or
    an HTTP-date, as a proxy in front of Discord may send)."""
    said = retry_after_seconds(_body(response).get("retry_after"))
    if said is not None:
        return said
    return retry_after_seconds(response.headers.get("retry-after"), date=response.headers.get("date"))
