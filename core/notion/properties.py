"""Pure translation between an enrollment's state and a Notion page's properties. No I/O.

Values are encoded for the type each property actually has in the database, so a database the
original system made (where, say, Email is a text column) is still written correctly. A property
whose type cannot hold the value is left out, and the schema check names it.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from core.campaign import CHRISTMAS_2025, Segment
from core.erasure import is_erased_address
from core.signups import clean_name
from core.statuses import EnrollmentStatus

STEPS = CHRISTMAS_2025.step_numbers
TITLE = "Name"
EMAIL = "Email"
STOP = "Stop"
STATUS = "Status"
BUSINESS = "Business"
SIGNUP_DATE = "Signup Date"
ACTIVE = EnrollmentStatus.ACTIVE.value
TEXT_TYPES = frozenset({"title", "rich_text", "email", "select", "status", "url", "phone_number"})
_TEXT_LIMIT = 2000  # Notion's limit for one rich text item
# Notion refuses the whole write for a longer value (developers.notion.com/reference/request-limits); an
# address may have 254 characters, so one too long for an email column is left out, not cut into another.
_VALUE_LIMITS = {"email": 200, "phone_number": 200, "url": 2000}
_OPTION_LIMIT = 100  # characters in a select option's name, which may hold no comma


def sent_box(step: int) -> str:
    return f"Email {step} Sent"


# The columns the mirror writes (and the schema check expects), with their Notion types.
EXPECTED: dict[str, str] = {
    TITLE: "title", EMAIL: "email", "First Name": "rich_text", "Business Name": "rich_text",
    "Segment": "select", "Campaign": "select", STATUS: "select",
    **{sent_box(n): "checkbox" for n in STEPS},
    "Last Email Sent": "date", "Next Email Due": "date", STOP: "checkbox",
}
SELECT_OPTIONS = {
    "Segment": [("CRITICAL", "red"), ("URGENT", "orange"), ("OPTIMIZE", "green")],
    "Campaign": [(CHRISTMAS_2025.name, "blue")],
    STATUS: [("active", "blue"), ("completed", "green"), ("unsubscribed", "gray"), ("bounced", "red"),
             ("cancelled", "brown")],
}


@dataclass(frozen=True)
class EnrollmentState:
    """What Notion should show for one enrollment, read from the database at sync time."""

    enrollment_id: str
    contact_id: str
    email: str
    first_name: str | None
    business_name: str | None
    segment: str
    campaign: str
    status: str
    sent_steps: frozenset[int]
    last_sent_at: datetime | None
    next_due_at: datetime | None


@dataclass(frozen=True)
class SequenceRow:
    """One Notion page read back: what the import and the Stop read-back need."""

    page_id: str
    email: str | None
    first_name: str | None
    business_name: str | None
    segment: str | None
    status: str | None
    sent_steps: frozenset[int]
    stop: bool
    signup_at: datetime | None


def display_name(state: EnrollmentState) -> str:
    parts = [p for p in (state.first_name, state.business_name) if p]
    return " — ".join(parts) if parts else state.email


def page_properties(state: EnrollmentState, schema: dict[str, str], business_page_id: str | None = None) -> dict:
    """The property values to write, encoded for the database's own types; "Stop" is the marketer's."""
    values: dict[str, object] = {
        TITLE: display_name(state), EMAIL: state.email, "First Name": state.first_name,
        "Business Name": state.business_name, "Segment": state.segment, "Campaign": state.campaign,
        STATUS: state.status, "Last Email Sent": state.last_sent_at, "Next Email Due": state.next_due_at,
        **{sent_box(n): n in state.sent_steps for n in STEPS},
    }
    if business_page_id:
        values[BUSINESS] = [business_page_id]
    elif is_erased_address(state.email):
        values[BUSINESS] = []  # a link to their business record would name an erased person again
    encoded = {}
    for name, value in values.items():
        kind = schema.get(name)
        if kind == "status":
            # A Notion "status" column only takes options made in Notion, which the API cannot add: a
            # value it lacks would refuse the whole page. Left out; `notion check` reports the type.
            continue
        payload = encode(kind, value) if kind else None
        if payload is not None:
            encoded[name] = payload
    return encoded


def encode(kind: str, value) -> dict | None:
    """A property value for a column of type `kind`, or None when that type cannot hold it."""
    if isinstance(value, bool):
        return {"checkbox": value} if kind == "checkbox" else None
    if isinstance(value, list):
        return {"relation": [{"id": v} for v in value]} if kind == "relation" else None
    if isinstance(value, datetime) or (value is None and kind == "date"):
        return {"date": {"start": value.astimezone(UTC).isoformat()} if value else None} if kind == "date" else None
    if kind not in TEXT_TYPES:
        return None
    text = (value or "")[:_TEXT_LIMIT]
    if kind in ("title", "rich_text"):
        return {kind: [{"type": "text", "text": {"content": text}}] if text else []}
    if kind in ("select", "status"):
        if "," in text or len(text) > _OPTION_LIMIT:  # Notion refuses the whole write for such an option name
            return None
        return {kind: {"name": text} if text else None}
    if len(value or "") > _VALUE_LIMITS.get(kind, _TEXT_LIMIT):
        return None
    return {kind: text or None}


def decode(prop: dict | None):
    """The plain value of a property as Notion returns it on a page."""
    if not prop:
        return None
    kind = prop.get("type")
    value = prop.get(kind)
    if kind in ("title", "rich_text"):
        return "".join(t.get("plain_text") or (t.get("text") or {}).get("content", "") for t in value or []) or None
    if kind in ("select", "status"):
        return (value or {}).get("name")
    if kind == "checkbox":
        return bool(value)
    if kind == "date":
        return parse_time((value or {}).get("start"))
    if kind in ("created_time", "last_edited_time"):
        return parse_time(value)
    if kind == "relation":
        return [r["id"] for r in value or []]
    if kind in ("email", "url", "phone_number", "number"):
        return value
    return None


def parse_time(text: str | None) -> datetime | None:
    """An aware UTC datetime from Notion's ISO text; a bare date means midnight UTC."""
    if not text:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def parse_row(page) -> SequenceRow:
    """Read a page the original system (or this mirror) wrote."""
    props = page.properties
    text = {name: decode(props.get(name)) for name in (EMAIL, "First Name", "Business Name", "Segment", STATUS)}
    email = text[EMAIL]
    if not email:  # some databases keep the address only in the title
        title = decode(props.get(TITLE)) or ""
        email = title if "@" in title else None
    segment = (text["Segment"] or "").strip().upper() or None
    return SequenceRow(
        page_id=page.id,
        email=email.strip().lower() if isinstance(email, str) and email.strip() else None,
        # The old database never validated its text; names meet the webhook's rules from here on.
        first_name=clean_name(text["First Name"]), business_name=clean_name(text["Business Name"]),
        segment=segment if segment in Segment.__members__ else None,
        status=text[STATUS],
        sent_steps=frozenset(n for n in STEPS if decode(props.get(sent_box(n))) is True),
        stop=decode(props.get(STOP)) is True,
        signup_at=decode(props.get(SIGNUP_DATE)) or page.created_time,
    )


def equals_filter(name: str, kind: str, value) -> dict:
    """A data source query filter matching `name == value` for a column of type `kind`."""
    return {"property": name, kind: {"equals": value}}


def empty_filter(name: str, kind: str) -> dict:
    """A data source query filter matching pages where the column of type `kind` is empty."""
    return {"property": name, kind: {"is_empty": True}}


def fingerprint(properties: dict) -> str:
    """A stable hash of what was written, so an unchanged state is not written twice."""
    return hashlib.sha256(json.dumps(properties, sort_keys=True, default=str).encode()).hexdigest()

