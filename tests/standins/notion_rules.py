"""The data rules of the Notion stand-in: property schemas, page values as Notion returns them, filters.

Strict where Notion is strict, so an adapter that passes here writes what Notion accepts: a
property that does not exist, or a value of the wrong type, is a 400 validation_error.
"""

import uuid
from typing import Any

TEXT = ("title", "rich_text")
PLAIN = ("email", "url", "phone_number", "number", "checkbox")
# Notion's documented property value limits (developers.notion.com/reference/request-limits).
_LENGTH_LIMITS = {"email": 200, "phone_number": 200, "url": 2000}
TYPES = (*TEXT, *PLAIN, "select", "status", "date", "relation", "created_time", "multi_select")


class Invalid(Exception):
    """A request Notion would refuse with 400 validation_error."""


def property_schema(name: str, definition: dict | str) -> dict:
    """A data source property object from `{"select": {...}}` (or just a type name)."""
    if isinstance(definition, str):
        definition = {definition: {}}
    kind = next((k for k in definition if k in TYPES), None)
    if kind is None:
        raise Invalid(f"Property {name!r} has no valid type.")
    config = dict(definition[kind] or {})
    if kind in ("select", "status", "multi_select"):
        config["options"] = [{"id": uuid.uuid4().hex[:8], "color": "default", **o} for o in config.get("options", [])]
    if kind == "relation":
        if "data_source_id" not in config:
            raise Invalid(f"Relation {name!r} needs a data_source_id (API 2025-09-03).")
        config.setdefault("type", "single_property")
    return {"id": uuid.uuid4().hex[:4], "name": name, "type": kind, kind: config}


def empty_value(kind: str, created_time: str) -> Any:
    return {"title": [], "rich_text": [], "relation": [], "multi_select": [], "checkbox": False,
            "created_time": created_time}.get(kind)


def page_value(schema: dict, value: Any, created_time: str) -> dict:
    """A page's property value, as Notion returns it, from what a client wrote."""
    kind = schema["type"]
    if not isinstance(value, dict) or kind not in value:
        raise Invalid(f"{schema['name']} is expected to be {kind}.")
    raw = value[kind]
    if kind in TEXT:
        raw = [_text_item(item) for item in raw or []]
    elif kind in ("select", "status"):
        raw = _option(schema, raw) if raw else None
    elif kind == "date":
        raw = {"start": raw["start"], "end": raw.get("end"), "time_zone": None} if raw else None
    elif kind == "relation":
        raw = [{"id": r["id"]} for r in raw or []]
    elif kind == "created_time":
        raise Invalid(f"{schema['name']} is a created_time property and cannot be written.")
    elif kind == "checkbox" and not isinstance(raw, bool):
        raise Invalid(f"{schema['name']} is expected to be a boolean.")
    elif kind in _LENGTH_LIMITS and raw is not None and len(raw) > _LENGTH_LIMITS[kind]:
        raise Invalid(f"body.properties.{schema['name']}.{kind}.length should be ≤ `{_LENGTH_LIMITS[kind]}`, "
                      f"instead was `{len(raw)}`.")
    result = {"id": schema["id"], "type": kind, kind: raw}
    if kind == "relation":
        result["has_more"] = False
    return result


def _text_item(item: dict) -> dict:
    content = (item.get("text") or {}).get("content", "")
    if len(content) > 2000:
        raise Invalid("Text content length should be ≤ 2000.")
    return {"type": "text", "text": {"content": content, "link": None}, "plain_text": content, "href": None}


def _option(schema: dict, raw: dict) -> dict:
    name = str(raw.get("name") or "")
    if "," in name or len(name) > 100:  # Notion's rules for an option name
        raise Invalid(f"Invalid select option name {name!r}: commas are not allowed, and at most 100 characters.")
    options = schema[schema["type"]]["options"]
    found = next((o for o in options if o["name"] == raw.get("name")), None)
    if found is None:
        if schema["type"] == "status":
            raise Invalid(f"Invalid status option {raw.get('name')!r}.")
        found = {"id": uuid.uuid4().hex[:8], "name": raw["name"], "color": "default"}
        options.append(found)  # Notion adds an unknown select option on write
    return dict(found)


def plain(prop: dict) -> Any:
    """The comparable value of a page property (text joined, option names, ids)."""
    kind, raw = prop["type"], prop[prop["type"]]
    if kind in TEXT:
        return "".join(t["plain_text"] for t in raw)
    if kind in ("select", "status"):
        return raw["name"] if raw else None
    if kind == "relation":
        return [r["id"] for r in raw]
    return raw


def matches(page: dict, query: dict | None, schema: dict) -> bool:
    """Evaluate a data source query filter (compound and/or, equals/does_not_equal/contains/is_empty)."""
    if not query:
        return True
    if "and" in query:
        return all(matches(page, q, schema) for q in query["and"])
    if "or" in query:
        return any(matches(page, q, schema) for q in query["or"])
    name = query.get("property")
    if name not in schema:
        raise Invalid(f"Could not find property with name or id: {name}")
    kind = schema[name]["type"]
    if kind not in query:
        raise Invalid(f"Filter for {name} is expected to use {kind}.")
    condition, value = next(iter(query[kind].items()))
    actual = plain(page["properties"][name])
    if condition == "equals":
        return actual == value
    if condition == "does_not_equal":
        return actual != value
    if condition == "contains":
        return value in (actual or "")
    if condition == "is_empty":
        return not actual
    if condition == "is_not_empty":
        return bool(actual)
    raise Invalid(f"Unsupported filter condition {condition!r}.")
