"""A stand-in for a Discord webhook (POST /api/webhooks/{id}/{token}) on 127.0.0.1.

    with DiscordStandIn() as discord:
        settings = make_settings(discord_webhook_url=discord.webhook_url)

Answers 204 and keeps the message, as Discord does without `?wait=true`. Checks what Discord
checks (a message needs content or embeds; embed limits; an embed's URL must be http(s) on a host
with a dot: Discord answers `{"embeds": ["0"]}` for `http://localhost:8501/…` or `http://bugsink:8000`,
as reported in go-gitea/gitea#11124, bugsink/bugsink#280 and rogerrum/alertmanager-discord#19). `fail(429, retry_after=0.2)` answers
a rate limit with Discord's JSON body (`retry_after` in seconds); `fail(503)` a server error.
`DiscordStandIn(forum=True)` is a webhook made in a forum channel: Discord refuses every post that
names no thread (400, code 220001; discord.com/developers/docs/resources/webhook#execute-webhook).
`DiscordStandIn(rate_limit=(5, 2.0))` enforces a webhook's own limit, 5 posts per 2 s; every answer
then carries Discord's X-RateLimit-* headers, and a post beyond it gets Discord's 429.

`webhook_url` is the address Discord's UI copies, with no API version: Discord serves it as its
deprecated default version, whose 429 gives `retry_after` (and Retry-After) in milliseconds
(discord/discord-api-docs#2360, #4722, and the v8 changelog). The same webhook under /api/v10/
answers in seconds, as the docs describe.
"""

import json
import math
import threading
import time
from urllib.parse import urlsplit
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tests.standins.jsonserver import Answer, JsonStandIn

WEBHOOK_PATH = "/api/webhooks/1234567890/standin-token"
VERSIONED_PATH = "/api/v10/webhooks/1234567890/standin-token"


@dataclass
class Fault:
    status: int = 503
    retry_after: float | None = None


class DiscordStandIn(JsonStandIn):
    def __init__(self, host: str = "127.0.0.1", port: int = 0, rate_limit: tuple[int, float] | None = None,
                 clock: Callable[[], float] = time.monotonic, forum: bool = False):
        super().__init__(host, port)
        self.forum = forum
        self._lock = threading.Lock()
        self._messages: list[dict] = []
        self._faults: list[Fault] = []
        self._limit, self._clock = rate_limit, clock
        self._window_start, self._used = float("-inf"), 0
        self.requests = 0
        self.rate_limited = 0
        self.paths: list[str] = []

    @property
    def webhook_url(self) -> str:
        return self.url + WEBHOOK_PATH

    @property
    def messages(self) -> list[dict]:
        with self._lock:
            return list(self._messages)

    def fail(self, status: int = 503, times: int = 1, retry_after: float | None = None) -> None:
        with self._lock:
            self._faults.extend(Fault(status, retry_after) for _ in range(times))

    def clear_faults(self) -> None:
        """The webhook works again (fixed, or Discord recovered)."""
        with self._lock:
            self._faults.clear()

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Answer | None:
        with self._lock:
            self.requests += 1
            if method != "POST" or path.split("?")[0] not in (WEBHOOK_PATH, VERSIONED_PATH):
                return 404, {"message": "Unknown Webhook", "code": 10015}, {}
            self.paths.append(path.split("?")[0])
            in_ms = path.split("?")[0] == WEBHOOK_PATH  # the deprecated default version counts milliseconds
            if self._faults:
                return self._fault(self._faults.pop(0), in_ms)
            allowed, limits = self._take()
            if not allowed:
                self.rate_limited += 1
                return self._rate_limited(float(limits["x-ratelimit-reset-after"]), in_ms, limits)
            status, answer, extra = self._accept(body, "thread_id=" in path.partition("?")[2])
            return status, answer, {**limits, **extra}

    def _take(self) -> tuple[bool, dict[str, str]]:
        """One post against the webhook's window, and the headers Discord sends about it."""
        if self._limit is None:
            return True, {}
        count, per = self._limit
        now = self._clock()
        if now >= self._window_start + per:
            self._window_start, self._used = now, 0
        allowed = self._used < count
        self._used += int(allowed)
        reset_after = self._window_start + per - now
        return allowed, {"x-ratelimit-limit": str(count), "x-ratelimit-remaining": str(count - self._used),
                         "x-ratelimit-reset-after": f"{reset_after:.3f}",
                         "x-ratelimit-reset": f"{time.time() + reset_after:.3f}", "x-ratelimit-bucket": "standin"}

    def _accept(self, body: bytes, in_thread: bool = False) -> Answer:
        try:
            message = json.loads(body)
        except ValueError:
            return 400, {"message": "The request body contains invalid JSON.", "code": 50109}, {}
        if self.forum and not in_thread and not (isinstance(message, dict) and message.get("thread_name")):
            return 400, {"message": "Webhooks posted to forum channels must have a thread_name or thread_id",
                         "code": 220001}, {}
        bad_url = _embed_with_bad_url(message)
        if bad_url is not None:
            return 400, {"embeds": [str(bad_url)]}, {}
        problem = _problem(message)
        if problem:
            return 400, {"message": problem, "code": 50035}, {}
        self._messages.append(message)
        return 204, None, {}

    def _fault(self, fault: Fault, in_ms: bool) -> Answer:
        if fault.status == 429:
            return self._rate_limited(fault.retry_after if fault.retry_after is not None else 0.5, in_ms, {})
        return fault.status, {"message": "Service unavailable", "code": 0}, {}

    @staticmethod
    def _rate_limited(wait: float, in_ms: bool, limits: dict[str, str]) -> Answer:
        said = round(wait * 1000) if in_ms else wait
        header = str(said) if in_ms else str(math.ceil(wait))
        return 429, {"message": "You are being rate limited.", "retry_after": said, "global": False}, {
            **limits, "retry-after": header, "x-ratelimit-scope": "user"}


def _problem(message: Any) -> str | None:
    """Discord's documented limits (discord.com/developers/docs/resources/message#embed-object-embed-limits)."""
    if not isinstance(message, dict) or not (message.get("content") or message.get("embeds")):
        return "Cannot send an empty message"
    if len(message.get("content") or "") > 2000:
        return "Invalid Form Body: content must be 2000 or fewer in length"
    if not 1 <= len(message.get("username") or "x") <= 80:
        return "Invalid Form Body: username must be between 1 and 80 in length"
    embeds = message.get("embeds") or []
    if len(embeds) > 10:
        return "Invalid Form Body: embeds must have at most 10 items"
    total = 0
    for embed in embeds:
        title, description = embed.get("title") or "", embed.get("description") or ""
        footer, author = (embed.get("footer") or {}).get("text") or "", (embed.get("author") or {}).get("name") or ""
        fields = embed.get("fields") or []
        if len(title) > 256 or len(author) > 256:
            return "Invalid Form Body: embed title and author name must be at most 256 characters"
        if len(description) > 4096 or len(footer) > 2048:
            return "Invalid Form Body: embed description must be at most 4096 characters, footer 2048"
        if len(fields) > 25:
            return "Invalid Form Body: an embed has at most 25 fields"
        for field in fields:
            name, value = field.get("name") or "", field.get("value") or ""
            if not name or not value or len(name) > 256 or len(value) > 1024:
                return "Invalid Form Body: embed fields need a name (at most 256) and a value (at most 1024)"
            total += len(name) + len(value)
        total += len(title) + len(description) + len(footer) + len(author)
    if total > 6000:
        return "Invalid Form Body: embed size exceeds maximum size of 6000"
    return None

def _embed_with_bad_url(message: Any) -> int | None:
    """The index of the first embed whose link Discord refuses, if any (checked on `url` fields)."""
    if not isinstance(message, dict):
        return None
    for index, embed in enumerate(message.get("embeds") or []):
        urls = [embed.get("url"), *((embed.get(part) or {}).get("url") for part in ("author", "image", "thumbnail"))]
        for url in filter(None, urls):
            parts = urlsplit(str(url))
            if parts.scheme not in ("http", "https") or "." not in (parts.hostname or ""):
                return index
    return None
