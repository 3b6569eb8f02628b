"""In-memory stand-ins for the side channels' ports (NotionMirror, AlertSink), tested themselves.

They behave like the real services where the services depend on it: FakeNotion refuses a
column that does not exist and keeps what a marketer ticks; both replay scripted failures.
"""

import itertools
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

from core.alerts import AlertSink
from core.notion import properties as P
from core.notion.errors import NotionRequestError
from core.notion.port import NotionMirror, NotionPage


class _Scripted:
    def __init__(self):
        self._failures: list[tuple[str | None, Exception]] = []
        self._lock = threading.Lock()
        self.calls: list[str] = []

    def fail_next(self, *errors: Exception, on: str | None = None) -> None:
        """The next calls (of method `on`, or any) raise these errors, one each, in order."""
        with self._lock:
            self._failures.extend((on, e) for e in errors)

    def _enter(self, name: str) -> None:
        with self._lock:
            self.calls.append(name)
            found = next((f for f in self._failures if f[0] in (None, name)), None)
            if found is not None:
                self._failures.remove(found)
                raise found[1]


class FakeNotion(_Scripted, NotionMirror):
    """A NotionMirror over dicts. `schema` defaults to every column the mirror expects."""

    def __init__(self, schema: dict[str, str] | None = None, businesses: dict[str, str] | None = None):
        super().__init__()
        self.columns = dict(P.EXPECTED if schema is None else schema)
        if businesses is not None:
            self.columns.setdefault(P.BUSINESS, "relation")
        self.businesses = businesses  # email → BusinessX page id; None: BusinessX not configured
        self.pages: dict[str, NotionPage] = {}
        self._ids = itertools.count(1)

    def schema(self, refresh: bool = False) -> dict[str, str]:
        self._enter("schema")
        return dict(self.columns)

    def add_properties(self, definitions: dict[str, dict]) -> None:
        self._enter("add_properties")
        for name, definition in definitions.items():
            self.columns[name] = next(iter(definition))

    def business_source_id(self) -> str | None:
        return "businessx-source" if self.businesses is not None else None

    def find_pages(self, emails: list[str]) -> dict[str, list[NotionPage]]:
        self._enter("find_pages")
        wanted = {e.lower() for e in emails}
        found: dict[str, list[NotionPage]] = {}
        for page in self.pages.values():
            email = P.parse_row(page).email
            if email in wanted:
                found.setdefault(email, []).append(page)
        return found

    def create_page(self, properties: dict) -> NotionPage:
        self._enter("create_page")
        page_id = f"page-{next(self._ids)}"
        self.pages[page_id] = NotionPage(page_id, f"https://notion.test/{page_id}", datetime.now(UTC), {})
        return self._write(page_id, properties)

    def update_page(self, page_id: str, properties: dict) -> NotionPage:
        self._enter("update_page")
        if page_id not in self.pages:
            raise NotionRequestError(f"Could not find page with ID: {page_id}", status=404, code="object_not_found")
        return self._write(page_id, properties)

    def stopped_pages(self) -> list[NotionPage]:
        self._enter("stopped_pages")
        rows = [(p, P.parse_row(p)) for p in self.pages.values()]
        return [p for p, row in rows if row.stop and row.status in (P.ACTIVE, None)]  # as NotionClient's filter

    def iter_pages(self) -> Iterator[NotionPage]:
        self._enter("iter_pages")
        return iter(sorted(self.pages.values(), key=lambda p: p.created_time))

    def find_business(self, email: str) -> str | None:
        self._enter("find_business")
        return (self.businesses or {}).get(email.lower())

    # ------------------------------------------------------------------ test helpers

    def add_page(self, values: dict, created_time: datetime | None = None) -> str:
        """A row written by a person (or the original system), from plain values."""
        page_id = f"page-{next(self._ids)}"
        self.pages[page_id] = NotionPage(page_id, f"https://notion.test/{page_id}", created_time or datetime.now(UTC))
        self._write(page_id, {n: P.encode(self.columns[n], v) for n, v in values.items()})
        return page_id

    def tick(self, page_id: str, name: str = P.STOP, value: bool = True) -> None:
        """A marketer ticks (or clears) a checkbox in Notion."""
        self._write(page_id, {name: {"checkbox": value}})

    def values(self, page_id: str) -> dict:
        return {name: P.decode(prop) for name, prop in self.pages[page_id].properties.items()}

    def pages_for(self, email: str) -> list[str]:
        return [p.id for p in self.pages.values() if P.parse_row(p).email == email.lower()]

    def _write(self, page_id: str, properties: dict) -> NotionPage:
        unknown = [n for n in properties if n not in self.columns]
        if unknown:
            raise NotionRequestError(f"{unknown[0]} is not a property that exists.", status=400,
                                     code="validation_error")
        page = self.pages[page_id]
        merged = {**page.properties, **{n: _as_returned(v) for n, v in properties.items()}}
        self.pages[page_id] = NotionPage(page.id, page.url, page.created_time, merged)
        return self.pages[page_id]


def _as_returned(value: dict) -> dict:
    """A written property value in the shape Notion returns it (typed, text with plain_text)."""
    kind, raw = next(iter(value.items()))
    if kind in ("title", "rich_text"):
        raw = [{**item, "plain_text": item["text"]["content"]} for item in raw]
    return {"type": kind, kind: raw}


class FakeDiscord(_Scripted, AlertSink):
    """An AlertSink that keeps every message it accepted."""

    name = "fake-discord"

    def __init__(self):
        super().__init__()
        self.messages: list[dict] = []

    def post(self, message: dict) -> None:
        self._enter("post")
        self.messages.append(message)

    def titles(self) -> list[str]:
        return [m["embeds"][0]["title"] for m in self.messages]

