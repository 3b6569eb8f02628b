"""The NotionMirror adapter over the official notion-client (API 2025-09-03, data sources).

Requests are paced to about 3 per second, Notion's documented average. A 429's Retry-After
pauses every later request, and the refused request is tried again after it (a 429 was never
carried out). A pause longer than `max_wait` is not slept through but raised as NotionUnavailable,
so a worker job never hangs on Notion. The SDK's own retry loop is off: other failures go back to
the outbox, which retries with backoff.

Never use `with Client(...)`: it swaps in a fresh httpx client and drops a custom transport.
"""

import json
import logging
import time
from collections.abc import Callable, Iterator

import httpx
from notion_client import Client
from notion_client.errors import ClientErrorCode, HTTPResponseError, RequestTimeoutError

from core.errors import safe_cause, without_secret
from core.notion import properties as P
from core.notion.errors import NotionAccessError, NotionError, NotionPageConflict, NotionRequestError, NotionUnavailable
from core.notion.port import NotionMirror, NotionPage
from core.ratelimit import TokenBucket, retry_after_seconds
from core.settings import Settings

log = logging.getLogger(__name__)
NOTION_VERSION = "2025-09-03"
RATE = 3.0
_OR_CHUNK = 50  # emails per compound "or" filter, well inside Notion's limit on filter size
SCHEMA_MAX_AGE = 300.0  # seconds a database's column list is trusted before it is read again
_RATE_LIMIT_RETRIES = 2  # 429s waited out inside one call before the outbox's backoff takes over
_OLDEST_FIRST = [{"timestamp": "created_time", "direction": "ascending"}]
_TRANSIENT_CODES = {"rate_limited", "internal_server_error", "service_unavailable", "gateway_timeout"}


class NotionClient(NotionMirror):
    """Reads and writes the Email Sequence database (and reads BusinessX) through notion-client."""

    def __init__(self, token: str, database_id: str, *, businessx_db_id: str = "", base_url: str = "",
                 rate: float = RATE, timeout: float = 10.0, max_wait: float = 5.0, http: httpx.Client | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        options = {"auth": token, "notion_version": NOTION_VERSION, "retry": False, "timeout_ms": int(timeout * 1000),
                   "logger": logging.getLogger("core.notion.sdk"), "log_level": logging.ERROR}
        if base_url:
            options["base_url"] = base_url.rstrip("/").removesuffix("/v1")
        self._sdk = Client(options, client=http or httpx.Client())
        self._token = token  # only to keep it out of error messages
        self._database_id = database_id
        self._businessx_db_id = businessx_db_id
        # No bursts: steady pacing leaves Notion's own burst allowance to absorb network jitter.
        self._bucket = TokenBucket(rate, capacity=1, clock=clock, sleep=sleep)
        self._clock = clock
        self._max_wait = max_wait
        self._blocked_until = float("-inf")
        self._sources: dict[str, str] = {}
        self._schemas: dict[str, tuple[float, dict[str, str]]] = {}  # database id → (read at, schema)

    def close(self) -> None:
        self._sdk.close()

    # ------------------------------------------------------------------ the port

    def schema(self, refresh: bool = False) -> dict[str, str]:
        return self._schema(self._database_id, refresh)

    def add_properties(self, definitions: dict[str, dict]) -> None:
        self._call(self._sdk.data_sources.update, self._source(self._database_id), properties=definitions,
                   subject="database")
        self._schemas.pop(self._database_id, None)

    def business_source_id(self) -> str | None:
        return self._source(self._businessx_db_id) if self._businessx_db_id else None

    def find_pages(self, emails: list[str]) -> dict[str, list[NotionPage]]:
        kind = self.schema().get(P.EMAIL)
        if kind not in P.TEXT_TYPES:
            raise NotionRequestError("the Email Sequence database has no Email column to find pages by; "
                                     "run `python -m core notion check`")
        found: dict[str, list[NotionPage]] = {}
        unique = sorted({e.lower() for e in emails})
        for start in range(0, len(unique), _OR_CHUNK):
            chunk = unique[start:start + _OR_CHUNK]
            query = {"or": [P.equals_filter(P.EMAIL, kind, e) for e in chunk]} if len(chunk) > 1 \
                else P.equals_filter(P.EMAIL, kind, chunk[0])
            for page in self._query(self._database_id, query, sorts=_OLDEST_FIRST):
                email = P.parse_row(page).email
                if email:
                    found.setdefault(email, []).append(page)
        return found

    def create_page(self, properties: dict) -> NotionPage:
        parent = {"type": "data_source_id", "data_source_id": self._source(self._database_id)}
        return _page(self._call(self._sdk.pages.create, parent=parent, properties=properties))

    def update_page(self, page_id: str, properties: dict) -> NotionPage:
        return _page(self._call(self._sdk.pages.update, page_id, properties=properties))

    def stopped_pages(self) -> list[NotionPage]:
        schema = self.schema()
        if schema.get(P.STOP) != "checkbox":
            return []  # no Stop column: nothing can have been ticked
        query = P.equals_filter(P.STOP, "checkbox", True)
        status_kind = schema.get(P.STATUS)
        # Narrowed to active rows where the filter is safe; a "status" column refuses an option it lacks,
        # and the sync checks each stopped sequence is still active anyway. An empty Status counts as
        # active: a page written before the column was added shows none until its next write, which
        # may come only after the next email, the one the Stop was ticked to prevent.
        if status_kind in ("select", "rich_text"):
            active = {"or": [P.equals_filter(P.STATUS, status_kind, P.ACTIVE), P.empty_filter(P.STATUS, status_kind)]}
            query = {"and": [query, active]}
        return list(self._query(self._database_id, query))

    def iter_pages(self) -> Iterator[NotionPage]:
        return self._query(self._database_id, None, sorts=_OLDEST_FIRST)

    def find_business(self, email: str) -> str | None:
        if not self._businessx_db_id:
            return None
        schema = self._schema(self._businessx_db_id)
        name = next((n for n, k in schema.items() if k == "email"), None) or (
            P.EMAIL if schema.get(P.EMAIL) in P.TEXT_TYPES else None)
        if name is None:
            log.warning("the BusinessX database has no email column; businesses are not linked",
                        extra={"action": "notion_business"})
            return None
        pages = self._query(self._businessx_db_id, P.equals_filter(name, schema[name], email.lower()), page_size=1)
        first = next(pages, None)
        return first.id if first else None

    # ------------------------------------------------------------------ plumbing

    def _source(self, database_id: str) -> str:
        """The database's first data source (API 2025-09-03 queries data sources, not databases)."""
        if database_id not in self._sources:
            try:
                found = self._call(self._sdk.databases.retrieve, database_id, subject="database")
                sources = found.get("data_sources") or []
                if not sources:
                    raise NotionAccessError(f"Notion database {database_id} has no data source")
                self._sources[database_id] = sources[0]["id"]
            except NotionAccessError as exc:
                if exc.code != "object_not_found":
                    raise
                # The id may already name a data source (copied from "Copy data source ID").
                self._call(self._sdk.data_sources.retrieve, database_id, subject="database")
                self._sources[database_id] = database_id
        return self._sources[database_id]

    def _schema(self, database_id: str, refresh: bool = False) -> dict[str, str]:
        # Read again every few minutes: a column someone renames, adds or retypes in Notion (or that
        # `notion check --create-missing` adds from another process) reaches a running worker.
        read_at, schema = self._schemas.get(database_id, (float("-inf"), {}))
        if refresh or self._clock() - read_at >= SCHEMA_MAX_AGE:
            source = self._call(self._sdk.data_sources.retrieve, self._source(database_id), subject="database")
            schema = {name: prop.get("type", "") for name, prop in source["properties"].items()}
            self._schemas[database_id] = (self._clock(), schema)
        return schema

    def _query(self, database_id: str, query: dict | None, *, sorts: list | None = None,
               page_size: int = 100) -> Iterator[NotionPage]:
        source, cursor = self._source(database_id), None
        while True:
            body = {"page_size": page_size, "filter": query, "sorts": sorts, "start_cursor": cursor}
            body = {k: v for k, v in body.items() if v}
            found = self._call(self._sdk.data_sources.query, source, subject="database", **body)
            yield from (_page(r) for r in found.get("results", []) if r.get("object") == "page")
            cursor = found.get("next_cursor")
            if not found.get("has_more") or not cursor:
                return

    def _call(self, fn, *args, subject: str = "page", **kwargs):
        retries = _RATE_LIMIT_RETRIES
        while True:
            self._pace()
            try:
                return fn(*args, **kwargs)
            except HTTPResponseError as exc:
                error = translate(exc, subject=subject)
                rate_limited = isinstance(error, NotionUnavailable) and error.status == 429
                if rate_limited:
                    # A 429 was not carried out, so even a create may go again after Retry-After:
                    # the next _pace() sleeps that long, or raises when it is too long to wait.
                    self._hold(1.0 if error.retry_after is None else error.retry_after)
                if not rate_limited or retries == 0:
                    raise error from exc
                retries -= 1
            except RequestTimeoutError as exc:
                raise NotionUnavailable("Notion did not answer in time") from exc
            except json.JSONDecodeError:
                # Not Notion answering (NOTION_API_URL at a web page, a proxy's sign-in form): retried as an outage.
                raise NotionUnavailable("Notion's address answered with something that is not JSON; "
                                        "check NOTION_API_URL") from None
            except httpx.HTTPError as exc:
                said = without_secret(str(exc), self._token, "NOTION_TOKEN")
                raise NotionUnavailable(f"cannot reach Notion: {exc.__class__.__name__}: {said}") \
                    from safe_cause(exc, self._token)

    def _pace(self) -> None:
        blocked = self._blocked_until - self._clock()
        if blocked > self._max_wait:
            raise NotionUnavailable(f"Notion asked for a pause; {blocked:.0f}s left", retry_after=blocked, status=429)
        self._bucket.acquire()

    def _hold(self, seconds: float) -> None:
        self._blocked_until = max(self._blocked_until, self._clock() + seconds)
        self._bucket.pause(seconds)


def translate(exc: HTTPResponseError, *, subject: str = "page") -> NotionError:
    """Notion's error as ours: retry later, fix the configuration, or this one request is refused."""
    status, code, said = exc.status, str(getattr(exc.code, "value", exc.code)), str(exc)
    if code == ClientErrorCode.ResponseError.value:  # a code the SDK does not know: Notion's own words, if any
        code, said = _notion_error(exc.body) or (code, said)
    message = f"Notion {status} {code}: {said}"
    if status == 409 or code == "conflict_error":  # one page, not Notion: pausing the mirror would show an outage
        return NotionPageConflict(message, status=status, code=code)
    if status == 429 or status >= 500 or code in _TRANSIENT_CODES:
        return NotionUnavailable(message, retry_after=_retry_after(exc.headers), status=status, code=code)
    if status in (401, 403) or (status == 404 and subject == "database"):
        return NotionAccessError(message, status=status, code=code)
    return NotionRequestError(message, status=status, code=code)


def _notion_error(body: str) -> tuple[str, str] | None:
    try:
        found = json.loads(body)
    except ValueError:
        return None
    if isinstance(found, dict) and isinstance(found.get("code"), str) and isinstance(found.get("message"), str):
        return found["code"], found["message"]
    return None


def _retry_after(headers: httpx.Headers) -> float | None:
    return retry_after_seconds(headers.get("retry-after"), date=headers.get("date"))


def _page(obj: dict) -> NotionPage:
    return NotionPage(id=obj["id"], url=obj.get("url", ""), created_time=P.parse_time(obj.get("created_time")),
                      properties=obj.get("properties") or {})


def notion_from_settings(settings: Settings, *, http: httpx.Client | None = None,
                         max_wait: float = 5.0) -> NotionClient:
    """The adapter for the configured database; NOTION_API_URL overrides Notion's base URL (tests)."""
    return NotionClient(settings.notion_token, settings.notion_email_sequence_db_id,
                        businessx_db_id=settings.notion_businessx_db_id, base_url=settings.notion_api_url, http=http,
                        max_wait=max_wait)
