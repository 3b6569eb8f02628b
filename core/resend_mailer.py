"""The Resend adapter for the Mailer port: SDK calls, pacing, and Resend's errors translated into ours.

The SDK keeps its configuration in module globals (`resend.api_key`, `resend.api_url`,
`resend.default_http_client`). The SDK takes `resend.api_url` from RESEND_API_URL in the process
environment at import; Settings reads the same variable from there or from `.env`, and a value it
found is set with the key and the HTTP client (which carries our timeout) before every call, so
one account per process is assumed.
"""

import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr, parsedate_to_datetime
from typing import Any

import resend
from resend.exceptions import ResendError

from core.errors import (AccountMailerError, MailerError, PermanentMailerError, TransientMailerError, safe_cause,
                         without_secret)
from core.mailers import Delivery, OutgoingEmail
from core.ratelimit import TokenBucket, retry_after_seconds

logger = logging.getLogger(__name__)

MAX_BATCH = 100
# The longest a 429's retry-after holds every call of this process (seconds): well inside a lease.
LONGEST_PAUSE = 10.0
# Resend tag names and values allow only ASCII letters, digits, underscores and dashes.
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_TAG_MAX = 256
# Resend's documented refusals of the sender rather than of one email (403 validation_error in
# docs/api-reference/errors): every email from this sender gets them alike.
_SENDER_REFUSED = re.compile(r"domain is not verified|only send testing emails", re.IGNORECASE)
# Resend's shared sending domain for accounts without their own, never in the domain list.
_SHARED_TEST_DOMAIN = "resend.dev"
# Domain statuses Resend sends from: partially_verified means receiving, or one of two sending records,
# is still pending, and "you can send normally" (docs/dashboard/domains/manage-domains).
_SENDABLE_STATUSES = frozenset({"verified", "partially_verified"})


class ResendMailer:
    """Sends through Resend: one email with `Emails.send`, 2..100 with a permissive `Batch.send`."""

    name = "resend"

    def __init__(
        self,
        api_key: str,
        from_email: str,
        rate_limit: float = 2.0,
        api_url: str = "",
        timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not api_key:
            raise ValueError("ResendMailer needs an API key; use DryRunMailer without one")
        self._api_key = api_key
        self._api_url = api_url  # empty: whatever the SDK read at import (Resend's own, or a test's)
        self.from_email = from_email
        # The SDK's public transport hook; its default RequestsClient, given our timeout
        # (annotated int, but requests takes float seconds).
        self._http = resend.RequestsClient(timeout=timeout)  # type: ignore[arg-type]
        # A burst of one spaces calls evenly: a new signup's email waits at most one interval,
        # instead of queueing behind a burst that spent the whole second's quota at once.
        self.bucket = TokenBucket(rate_limit, capacity=1, clock=clock, sleep=sleep)
        self._clock = clock

    def __repr__(self) -> str:
        return f"ResendMailer(from_email={self.from_email!r}, rate={self.bucket.rate:g}/s)"

    def send(self, emails: Sequence[OutgoingEmail], idempotency_key: str) -> list[Delivery]:
        """Send one email alone or 2..100 as one batch, replay-safe under `idempotency_key`."""
        if not emails:
            return []
        if len(emails) > MAX_BATCH:
            raise ValueError(f"Resend accepts at most {MAX_BATCH} emails per batch, got {len(emails)}")
        params = [self._params(email) for email in emails]
        logger.debug(
            "resend send", extra={"action": "resend_send", "count": len(emails), "idempotency_key": idempotency_key}
        )
        try:
            if len(emails) == 1:
                sent = self._call(resend.Emails.send, params[0], {"idempotency_key": idempotency_key})
                return [Delivery(emails[0].send_id, provider_id=sent["id"])]
            options = {"idempotency_key": idempotency_key, "batch_validation": "permissive"}
            return _batch_deliveries(emails, self._call(resend.Batch.send, params, options))
        except ResendError as error:
            raise translate_error(error, self._api_key) from safe_cause(error, self._api_key)

    def check(self) -> str:
        """List the account's domains with one cheap authenticated call and say which are verified."""
        try:
            listing = self._call(resend.Domains.list)
        except ResendError as error:
            if error.error_type == "restricted_api_key" and str(error.code) == "401":
                # A sending-only key is the safe production choice; it just cannot list domains. (The same
                # name with 403 says "API key is not active": that key sends nothing.)
                return f"API key accepted (sending only, so domains are not listed); sender {self.from_email}"
            raise translate_error(error, self._api_key) from safe_cause(error, self._api_key)
        domains = {d["name"]: d.get("status", "unknown") for d in listing.get("data", [])}
        sender_domain = parseaddr(self.from_email)[1].rpartition("@")[2].lower()
        if sender_domain != _SHARED_TEST_DOMAIN and domains.get(sender_domain) not in _SENDABLE_STATUSES:
            raise AccountMailerError(
                f"Resend: the sender domain {sender_domain or '(none)'} is not verified "
                f"(account domains: {_describe(domains)})"
            )
        return f"connected; sender {self.from_email}; domains: {_describe(domains)}"

    def _params(self, email: OutgoingEmail) -> dict[str, Any]:
        params: dict[str, Any] = {
            "from": self.from_email,
            "to": [email.to],
            "subject": email.subject,
            "html": email.html,
            "text": email.text,
        }
        if email.headers:
            params["headers"] = dict(email.headers)
        if email.tags:
            params["tags"] = [_tag(name, value) for name, value in email.tags.items()]
        return params

    def _call(self, operation: Callable[..., Any], *args: Any) -> Any:
        self.bucket.acquire()
        started = self._clock()  # local: several dispatch lanes share this mailer
        resend.api_key = self._api_key
        resend.default_http_client = self._http
        if self._api_url:
            resend.api_url = self._api_url
        try:
            response = operation(*args)
        except ResendError as error:
            self._observe(error.headers, started)
            if str(error.code) == "429":
                retry_after = _retry_after(error.headers)
                # Held here only briefly: a daily quota's hours are waited out by the batch's backoff,
                # not by a sleep that would outlast a claimed batch's lease and hang a --once run.
                self.bucket.pause(min(retry_after if retry_after is not None else 1.0, LONGEST_PAUSE))
            raise
        self._observe(response.get("http_headers") or {}, started)
        return response

    def _observe(self, headers: Mapping[str, str], started: float) -> None:
        headers = _lower(headers)
        self.bucket.observe(
            limit=_number(headers.get("ratelimit-limit")),
            remaining=_number(headers.get("ratelimit-remaining")),
            reset=_number(headers.get("ratelimit-reset")),
            elapsed=self._clock() - started,
        )


def translate_error(error: ResendError, api_key: str = "") -> MailerError:
    """Map a Resend SDK error to Transient (retry), Account (fix the key/domain) or Permanent."""
    said = without_secret(error.message, api_key, "RESEND_API_KEY")
    if error.error_type == "HttpClientError":
        # The SDK wraps every requests exception (refused, reset, timeout) under this type.
        return TransientMailerError(f"Resend unreachable: {said}")
    code = str(error.code)
    status = int(code) if code.isdigit() else 500
    message = f"Resend {status} {error.error_type}: {said}"
    retry_after = _retry_after(error.headers)
    if status == 429 and error.error_type == "monthly_quota_exceeded":
        # Only an upgrade or the next month clears it, for every email alike: the breaker pauses sending.
        return AccountMailerError(message, status)
    if status == 429 and error.error_type == "daily_quota_exceeded":
        # The free plan's quota is a UTC calendar day, reset at midnight UTC (Resend's usage-limits page);
        # a retry-after on the answer, if any, is the per-second window's.
        return TransientMailerError(message, max(retry_after or 0.0, _until_utc_midnight(error.headers)), status)
    if status == 429:
        return TransientMailerError(message, retry_after, status)
    if status >= 500 or status == 408:
        # A 503 may say how long the outage lasts (RFC 9110 §10.2.3); the backoff honours it (DESIGN §4.6).
        return TransientMailerError(message, retry_after, status)
    if status == 409 and error.error_type == "concurrent_idempotent_requests":
        return TransientMailerError(message, status=status)
    if status == 409 and error.error_type == "invalid_idempotent_request":
        # The key was used before with other content: an earlier attempt of this batch got through,
        # and the emails have changed since (an erasure, an edited template). Most likely delivered.
        return PermanentMailerError(
            f"outcome unknown: Resend already took this batch under its key, before its emails changed, so they "
            f"were most likely delivered; check Resend's log before retrying ({message})", status)
    if status in (404, 405):
        # The endpoints we call always exist: the API address is wrong (or a proxy is in the way), for
        # every email alike, so the breaker holds them rather than each lead's email failing for good.
        return AccountMailerError(f"{message} (check RESEND_API_URL)", status)
    # Resend answers 400 "API key is invalid" on non-sending endpoints, so check() sees it there.
    if status in (401, 403) or "api key" in error.message.lower():
        return AccountMailerError(message, status)
    return PermanentMailerError(message, status)


def sanitize_tag(value: str) -> str:
    """Make a tag name or value acceptable to Resend: "Christmas 2025" -> "Christmas_2025"."""
    return _TAG_UNSAFE.sub("_", value)[:_TAG_MAX]


def _tag(name: str, value: str) -> dict[str, str]:
    tag = {"name": sanitize_tag(name)}
    if value:
        tag["value"] = sanitize_tag(str(value))
    return tag


def _batch_deliveries(emails: Sequence[OutgoingEmail], response: Mapping[str, Any]) -> list[Delivery]:
    # Permissive mode lists ids for the accepted emails only, in order, and errors by index.
    errors = {int(e["index"]): e.get("message", "rejected by Resend") for e in response.get("errors") or []}
    ids = [item["id"] for item in response.get("data") or []]
    refused = next((m for m in errors.values() if _SENDER_REFUSED.search(str(m))), None)
    if refused is not None and not ids:
        # Nothing went: the batch waits with its key while the breaker pauses sending, as a lone email's 403 does.
        raise AccountMailerError(f"Resend 403 validation_error: {refused}", 403)
    if len(ids) != len(emails) - len(errors):
        raise PermanentMailerError(
            f"Resend answered {len(ids)} ids and {len(errors)} errors for a batch of {len(emails)}"
        )
    next_id = iter(ids)
    return [
        Delivery(email.send_id, error=errors[i]) if i in errors else Delivery(email.send_id, provider_id=next(next_id))
        for i, email in enumerate(emails)
    ]


def _describe(domains: Mapping[str, str]) -> str:
    return ", ".join(f"{name} ({status})" for name, status in domains.items()) or "none"


def _lower(headers: Mapping[str, str] | None) -> dict[str, str]:
    return {str(k).lower(): v for k, v in (headers or {}).items()}


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    headers = _lower(headers)
    return retry_after_seconds(headers.get("retry-after"), date=headers.get("date"))


def _until_utc_midnight(headers: Mapping[str, str] | None) -> float:
    """Seconds from the answer's own Date (our clock when it has none) to the next midnight UTC."""
    try:
        now = parsedate_to_datetime(_lower(headers).get("date", ""))
        now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    except (TypeError, ValueError, IndexError):
        now = datetime.now(UTC)
    return (datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC) - now).total_seconds()


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
