"""The AlertSink adapter for a Discord webhook: one httpx POST, Discord's answers translated into ours.

The webhook URL carries its token, so it is never logged or put in an error message.
"""

import httpx

from core.alerts import AlertError, AlertSink, ChannelDownError, PermanentAlertError, TransientAlertError
from core.ratelimit import retry_after_seconds


class DiscordWebhook(AlertSink):
    """Posts messages (embeds) to DISCORD_WEBHOOK_URL."""

    name = "discord"

    def __init__(self, url: str, *, timeout: float = 10.0, http: httpx.Client | None = None):
        self._url = url
        self._http = http or httpx.Client()
        self._timeout = timeout

    def close(self) -> None:
        self._http.close()

    def post(self, message: dict) -> None:
        try:
            response = self._http.post(self._url, json=message, timeout=self._timeout)
        except httpx.TimeoutException as exc:
            raise TransientAlertError("Discord did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise TransientAlertError(f"cannot reach Discord: {exc.__class__.__name__}") from exc
        if response.is_success:
            return
        raise translate(response)


def translate(response: httpx.Response) -> AlertError:
    """429 and 5xx: retry (a 429 after its JSON `retry_after` seconds); 401, 403 and 404: the webhook
    itself is gone or wrong, so the channel waits; any other 4xx: this message is refused."""
    status = response.status_code
    detail = _message(response)
    if status in (401, 403, 404):
        return ChannelDownError(f"Discord {status}: {detail} (check DISCORD_WEBHOOK_URL)", status=status)
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
    return str(_body(response).get("message") or response.reason_phrase or "no detail")[:300]


def _retry_after(response: httpx.Response) -> float | None:
    """Discord's JSON `retry_after` (seconds, may be fractional), else the Retry-After header (seconds or
    an HTTP-date, as a proxy in front of Discord may send)."""
    said = retry_after_seconds(_body(response).get("retry_after"))
    if said is not None:
        return said
    return retry_after_seconds(response.headers.get("retry-after"), date=response.headers.get("date"))
