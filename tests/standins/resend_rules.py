"""The Resend stand-in's pure parts: answers, faults, the per-second limit and email validation."""

import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# (HTTP status, JSON body, extra response headers)
Answer = tuple[int, Any, dict[str, str]]
# (HTTP status, message, Resend error name)
Problem = tuple[int, str, str]

_ADDRESS = re.compile(r"^(?:[^<>]*<)?[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+>?$")
_TAG = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
# Statuses a domain sends from (docs/dashboard/domains/manage-domains: partially_verified "can send normally").
_SENDABLE = {"verified", "partially_verified"}
_ERROR_NAMES = {400: "validation_error", 401: "missing_api_key", 403: "invalid_api_key", 404: "not_found",
                409: "invalid_idempotent_request", 422: "validation_error", 429: "rate_limit_exceeded"}


@dataclass
class Fault:
    """A scripted answer for the next API call (to `path` only, when given)."""

    status: int | None = 500  # None drops the connection without answering
    retry_after: float | str | None = None  # seconds, or a string sent as it is (an HTTP-date)
    message: str = "Scripted failure from the Resend stand-in."
    name: str | None = None
    path: str | None = None
    accept: bool = False  # handle and record the call first, then answer with the fault instead


@dataclass
class SentEmail:
    """One email the stand-in accepted."""

    id: str
    sender: str
    to: list[str]
    subject: str
    html: str | None
    text: str | None
    headers: dict[str, str]
    tags: list[dict[str, str]]
    idempotency_key: str | None
    batch: bool
    at: float = field(default_factory=time.time)


def error(status: int, message: str, name: str | None = None, headers: dict[str, str] | None = None) -> Answer:
    """An answer in Resend's error shape."""
    body = {"statusCode": status, "name": name or _ERROR_NAMES.get(status, "application_error"), "message": message}
    return status, body, dict(headers or {})


class FixedWindow:
    """At most `limit` calls in each whole second of `clock`, like Resend's per-second limit."""

    def __init__(self, limit: float, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self._clock = clock
        self._window: int | None = None
        self._count = 0

    def take(self, consume: bool = True) -> tuple[bool, dict[str, str]]:
        """Whether a call may go now (counting it if `consume`), and the ratelimit-* headers."""
        now = self._clock()
        if math.floor(now) != self._window:
            self._window, self._count = math.floor(now), 0
        allowed = self._count < self.limit
        if allowed and consume:
            self._count += 1
        reset = str(max(1, math.ceil(self._window + 1 - now)))  # whole seconds, as Resend sends them
        headers = {
            "ratelimit-limit": f"{self.limit:g}",
            "ratelimit-remaining": f"{max(self.limit - self._count, 0):g}",
            "ratelimit-reset": reset,
        }
        return allowed, headers if allowed else {**headers, "retry-after": reset}


def problem(email: Any, verified_domains: Mapping[str, str] | None = None) -> Problem | None:
    """What Resend would refuse in one email's params, or None; senders checked only given domains."""
    if not isinstance(email, dict):
        return 422, "Each email must be a JSON object.", "validation_error"
    for required in ("from", "to", "subject"):
        if not email.get(required):
            return 422, f"Missing `{required}` field.", "missing_required_field"
    if not (email.get("html") or email.get("text")):
        return 422, "Missing `html` or `text` field.", "missing_required_field"
    to = recipients(email)
    if len(to) > 50 or not all(isinstance(a, str) and _ADDRESS.match(a) for a in to):
        return 422, ("Invalid `to` field. The email address needs to follow the `email@example.com` "
                     "or `Name <email@example.com>` format."), "validation_error"
    if not all(_valid_tag(tag) for tag in email.get("tags") or []):
        return 422, "Tags should only contain ASCII letters, numbers, underscores, or dashes.", "validation_error"
    domain = str(email["from"]).rstrip(">").rpartition("@")[2].lower()
    if verified_domains is not None and verified_domains.get(domain) not in _SENDABLE:
        return 403, f"The {domain} domain is not verified. Please, add and verify your domain.", "validation_error"
    return None


def recipients(email: Mapping[str, Any]) -> list[str]:
    """Resend takes `to` as one address or a list."""
    return email["to"] if isinstance(email["to"], list) else [email["to"]]


def _valid_tag(tag: Any) -> bool:
    if not isinstance(tag, dict) or not _TAG.match(str(tag.get("name", ""))):
        return False
    return "value" not in tag or bool(_TAG.match(str(tag["value"])))
