"""A stand-in for Notion's API, version 2025-09-03 (databases hold data sources), on 127.0.0.1.

    with NotionStandIn(rate_limit=3) as notion:
        db = notion.add_database({"Name": "title", "Email": "email", "Stop": "checkbox"})
        settings = make_settings(notion_token=notion.token, notion_email_sequence_db_id=db,
                                 notion_api_url=notion.url)

Serves GET /v1/databases/{id}, GET|PATCH /v1/data_sources/{id}, POST /v1/data_sources/{id}/query,
POST /v1/pages and GET|PATCH /v1/pages/{id}. `fail()` scripts faults (429 with Retry-After, 5xx,
a write carried out whose answer is lost); `down = True` answers 503 to everything; `rate_limit`
answers 429 beyond that many requests per second, as Notion does.
"""

import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tests.standins import notion_rules as rules
from tests.standins.jsonserver import Answer, JsonStandIn

VERSION = "2025-09-03"


@dataclass
class Fault:
    status: int = 503
    code: str = "service_unavailable"
    retry_after: float | str | None = None  # seconds, or a string sent as it is (an HTTP-date)
    path: str | None = None    # only requests whose path starts with this, e.g. "/v1/pages"
    method: str | None = None
    apply: bool = False        # carry the request out, then answer with the fault: a lost response


def error(status: int, code: str, message: str, headers: dict | None = None) -> Answer:
    return status, {"object": "error", "status": status, "code": code, "message": message}, headers or {}


class NotionStandIn(JsonStandIn):
    def __init__(self, token: str = "secret_standin", rate_limit: float = 0, retry_after: int = 1,
                 latency_ms: float = 0, host: str = "127.0.0.1", port: int = 0,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__(host, port)
        self.token, self.down = token, False
        self._rate, self._retry_after, self._latency, self._clock = rate_limit, retry_after, latency_ms / 1000, clock
        self._tokens, self._refilled = float(max(rate_limit, 1)), clock()
        self._lock = threading.RLock()
        self._databases: dict[str, str] = {}          # database id → data source id
        self._sources: dict[str, dict] = {}           # data source id → {"database_id", "properties"}
        self._pages: dict[str, dict] = {}
        self._faults: list[Fault] = []
        self.stats = dict.fromkeys(("requests", "rate_limited", "faulted", "created", "updated", "queried"), 0)

    # ------------------------------------------------------------------ test controls

    def add_database(self, properties: Mapping[str, str | dict], title: str = "Email Sequence") -> str:
        database_id, source_id = str(uuid.uuid4()), str(uuid.uuid4())
        with self._lock:
            self._databases[database_id] = source_id
            self._sources[source_id] = {"database_id": database_id, "title": title, "properties": {
                name: rules.property_schema(name, d) for name, d in properties.items()}}
        return database_id

    def limit(self, per_second: float) -> None:
        """Answer 429 beyond this many requests per second (bursts of as many), as Notion does."""
        with self._lock:
            self._rate, self._tokens, self._refilled = per_second, float(max(per_second, 1)), self._clock()

    def source_id(self, database_id: str) -> str:
        return self._databases[database_id]

    def schema(self, database_id: str) -> dict[str, str]:
        with self._lock:
            return {n: p["type"] for n, p in self._sources[self._databases[database_id]]["properties"].items()}

    def add_page(self, database_id: str, values: Mapping[str, Any], created_time: str | None = None) -> str:
        """Write a row as a person (or the original system) would, from plain values."""
        source = self._databases[database_id]
        with self._lock:
            props = self._sources[source]["properties"]
            page = self._new_page(source, created_time or _now())
            self._write(page, {n: _encode(props[n]["type"], v) for n, v in values.items()})
            return page["id"]

    def pages(self, database_id: str) -> list[dict]:
        source = self._databases[database_id]
        with self._lock:
            return [json.loads(json.dumps(p)) for p in self._pages.values()
                    if p["parent"]["data_source_id"] == source and not p["in_trash"]]

    def values(self, page_id: str) -> dict[str, Any]:
        """A page's properties as plain values: text, option names, booleans, date strings, ids."""
        with self._lock:
            return {n: rules.plain(p) for n, p in self._pages[page_id]["properties"].items()}

    def set_value(self, page_id: str, name: str, value: Any) -> None:
        """A marketer's edit in the Notion UI, e.g. ticking "Stop"."""
        with self._lock:
            page = self._pages[page_id]
            kind = self._sources[page["parent"]["data_source_id"]]["properties"][name]["type"]
            self._write(page, {name: _encode(kind, value)})

    def trash(self, page_id: str) -> None:
        with self._lock:
            self._pages[page_id]["in_trash"] = self._pages[page_id]["archived"] = True

    def fail(self, times: int = 1, **fault: Any) -> None:
        with self._lock:
            self._faults.extend(Fault(**fault) for _ in range(times))

    # ------------------------------------------------------------------ the API

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Answer | None:
        time.sleep(self._latency)
        with self._lock:
            self.stats["requests"] += 1
            if self.down:
                return error(503, "service_unavailable", "Notion is unavailable.")
            if headers.get("authorization") != f"Bearer {self.token}":
                return error(401, "unauthorized", "API token is invalid.")
            if headers.get("notion-version") != VERSION:
                return error(400, "validation_error", f"This stand-in speaks Notion-Version {VERSION} only.")
            if not self._take_token():
                self.stats["rate_limited"] += 1
                return error(429, "rate_limited", "You have been rate limited.",
                             {"retry-after": str(self._retry_after)})
            fault = next((f for f in self._faults if (f.path is None or path.startswith(f.path))
                          and f.method in (None, method)), None)
            if fault is not None:
                self._faults.remove(fault)
                self.stats["faulted"] += 1
                if not fault.apply:
                    return self._fault(fault)
            try:
                answer = self._route(method, path.split("?")[0].removeprefix("/v1/"), json.loads(body or b"{}"))
            except rules.Invalid as invalid:
                answer = error(400, "validation_error", str(invalid))
            return self._fault(fault) if fault is not None else answer

    def _fault(self, fault: Fault) -> Answer:
        retry_after = fault.retry_after
        headers = {} if retry_after is None else {
            "retry-after": retry_after if isinstance(retry_after, str) else f"{retry_after:g}"}
        return error(fault.status, fault.code, f"Scripted fault {fault.status}.", headers)

    def _take_token(self) -> bool:
        if not self._rate:
            return True
        now = self._clock()
        self._tokens = min(max(self._rate, 1), self._tokens + (now - self._refilled) * self._rate)
        self._refilled = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def _route(self, method: str, path: str, body: dict) -> Answer:
        parts = path.strip("/").split("/")
        if method == "GET" and parts[0] == "databases" and len(parts) == 2:
            if parts[1] not in self._databases:
                return error(404, "object_not_found", f"Could not find database with ID: {parts[1]}.")
            return 200, {"object": "database", "id": parts[1], "data_sources": [
                {"id": self._databases[parts[1]], "name": self._sources[self._databases[parts[1]]]["title"]}]}, {}
        if parts[0] == "data_sources" and len(parts) >= 2:
            if parts[1] not in self._sources:
                return error(404, "object_not_found", f"Could not find data source with ID: {parts[1]}.")
            if len(parts) == 3 and parts[2] == "query" and method == "POST":
                return self._query(parts[1], body)
            if method == "PATCH":
                self._alter(self._sources[parts[1]]["properties"], body.get("properties") or {})
            return 200, {"object": "data_source", "id": parts[1], **self._sources[parts[1]]}, {}
        if parts[0] == "pages" and method == "POST" and len(parts) == 1:
            return self._create(body)
        if parts[0] == "pages" and len(parts) == 2:
            page = self._pages.get(parts[1])
            if page is None:
                return error(404, "object_not_found", f"Could not find page with ID: {parts[1]}.")
            if method == "PATCH":
                if page["in_trash"]:
                    return error(400, "validation_error", "Can't edit block that is archived.")
                self._write(page, body.get("properties") or {})
                self.stats["updated"] += 1
            return 200, page, {}
        return error(400, "invalid_request_url", f"Invalid request URL {method} /v1/{path}.")

    def _create(self, body: dict) -> Answer:
        parent = body.get("parent") or {}
        if parent.get("type") != "data_source_id" or parent.get("data_source_id") not in self._sources:
            raise rules.Invalid("parent must be {'type': 'data_source_id', 'data_source_id': …} in 2025-09-03.")
        page = self._new_page(parent["data_source_id"], _now())
        try:
            self._write(page, body.get("properties") or {})
        except rules.Invalid:
            del self._pages[page["id"]]
            raise
        self.stats["created"] += 1
        return 200, page, {}

    def _query(self, source_id: str, body: dict) -> Answer:
        self.stats["queried"] += 1
        schema = self._sources[source_id]["properties"]
        found = [p for p in self._pages.values() if p["parent"]["data_source_id"] == source_id and not p["in_trash"]
                 and rules.matches(p, body.get("filter"), schema)]
        for sort in body.get("sorts") or []:
            found.sort(key=lambda p: p["created_time"], reverse=sort.get("direction") == "descending")
        start, size = int(body.get("start_cursor") or 0), min(int(body.get("page_size") or 100), 100)
        more = start + size < len(found)
        return 200, {"object": "list", "results": found[start:start + size], "has_more": more,
                     "next_cursor": str(start + size) if more else None, "type": "page_or_data_source"}, {}

    def _alter(self, properties: dict, changes: dict) -> None:
        for name, change in changes.items():
            if change is None:
                properties.pop(name, None)
            elif set(change) == {"name"}:
                properties[change["name"]] = {**properties.pop(name), "name": change["name"]}
            else:
                properties[change.get("name", name)] = rules.property_schema(change.get("name", name), change)
        for page in self._pages.values():  # new columns appear empty on existing rows
            self._fill(page)

    def _new_page(self, source_id: str, created_time: str) -> dict:
        page_id = str(uuid.uuid4())
        page = {"object": "page", "id": page_id, "created_time": created_time, "last_edited_time": created_time,
                "url": f"https://www.notion.so/{page_id.replace('-', '')}", "in_trash": False, "archived": False,
                "parent": {"type": "data_source_id", "data_source_id": source_id,
                           "database_id": self._sources[source_id]["database_id"]}, "properties": {}}
        self._pages[page_id] = page
        self._fill(page)
        return page

    def _fill(self, page: dict) -> None:
        schema = self._sources[page["parent"]["data_source_id"]]["properties"]
        page["properties"] = {name: page["properties"].get(name) or {"id": s["id"], "type": s["type"],
                              s["type"]: rules.empty_value(s["type"], page["created_time"])}
                              for name, s in schema.items()}

    def _write(self, page: dict, properties: dict) -> None:
        schema = self._sources[page["parent"]["data_source_id"]]["properties"]
        unknown = [n for n in properties if n not in schema]
        if unknown:
            raise rules.Invalid(f"{unknown[0]} is not a property that exists.")
        values = {n: rules.page_value(schema[n], v, page["created_time"]) for n, v in properties.items()}
        page["properties"].update(values)
        page["last_edited_time"] = _now()


def _encode(kind: str, value: Any) -> dict:
    """Plain test values in the request format: text, an option name, a bool, an ISO date, page ids."""
    if kind in rules.TEXT:
        return {kind: [{"type": "text", "text": {"content": value}}] if value else []}
    if kind in ("select", "status"):
        return {kind: {"name": value} if value else None}
    if kind == "date":
        return {"date": {"start": value} if value else None}
    if kind == "relation":
        return {"relation": [{"id": v} for v in value]}
    return {kind: value}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
