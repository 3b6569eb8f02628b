"""Validation of a website signup: the webhook's request model, shared by every intake path."""

import math
import re
import unicodedata
from typing import Annotated, Any

from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.errors import InvalidSignup

MAX_EXTRA_STRING = 1000
MAX_NAME = 200
MAX_NESTING = 5
# Control characters (NUL, tab, line breaks, C1) have no place in a name: names go into subject
# headers, and PostgreSQL refuses NUL outright. Nor do Unicode's line and paragraph separators, or
# the bidirectional overrides and isolates that make a name display as something else.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# A JSON escape like "\ud800" decodes to half a surrogate pair: a str that no database can store as UTF-8.
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


_PLAIN_NUMBER = re.compile(r"\s*[+-]?\d+(\.\d+)?\s*")


def _plain_number(value: Any) -> Any:
    # JSON true would otherwise be read as 1 red system. Numbers sent as text ("3") are taken, as the
    # original webhook took them, but only in plain decimal: Python would also read "2_0" as 20.
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")
    if isinstance(value, str) and not _PLAIN_NUMBER.fullmatch(value):
        raise ValueError("must be a number")
    return value


# The limits sit on the number alone: on the whole `int | None`, pydantic would apply them to an
# explicit null too and fail with a TypeError (a 500) instead of taking null as "not given".
Count = Annotated[Annotated[int, Field(ge=0, le=50)] | None, BeforeValidator(_plain_number), Field(default=None)]
Score = Annotated[Annotated[float, Field(ge=0, le=100)] | None, BeforeValidator(_plain_number), Field(default=None)]
Name = Annotated[str | None, Field(default=None, max_length=MAX_NAME)]


class SignupIn(BaseModel):
    """The website's assessment form. Unknown fields are kept, within limits, for the record."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    email: str = Field(max_length=254)
    first_name: Name
    business_name: Name
    red_systems: Count
    orange_systems: Count
    yellow_systems: Count
    green_systems: Count
    assessment_score: Score

    @field_validator("email")
    @classmethod
    def _normalise_email(cls, value: str) -> str:
        try:
            return _normalised(value)
        except EmailNotValidError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("first_name", "business_name")
    @classmethod
    def _clean_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if _CONTROL.search(value):
            raise ValueError("must not contain control characters")
        return value if _visible(value) else None

    @model_validator(mode="after")
    def _check_extra_fields(self) -> "SignupIn":
        for key, value in (self.model_extra or {}).items():
            if problem := _extra_problem(key, depth=0):
                raise ValueError(f"a field name {problem}")  # not echoed: the name itself is the trouble
            if problem := _extra_problem(value, depth=0):
                raise ValueError(f"field {key!r} {problem}")
        return self


def _extra_problem(value: Any, depth: int) -> str | None:
    """Why an unknown field (or a key or value inside it) cannot be kept as strict JSON text, if it can't."""
    if depth > MAX_NESTING:
        return "is nested too deeply"
    if isinstance(value, str):
        if len(value) > MAX_EXTRA_STRING:
            return f"is longer than {MAX_EXTRA_STRING} characters"
        if "\x00" in value:
            return "contains a NUL character"
        if _LONE_SURROGATE.search(value):
            return "contains an unpaired surrogate escape (not valid Unicode text)"
    elif isinstance(value, float) and not math.isfinite(value):
        return "is a number too large to store"  # 1e400 parses to infinity, which JSON cannot hold
    elif isinstance(value, dict):
        return next((p for v in [*value.keys(), *value.values()] if (p := _extra_problem(v, depth + 1))), None)
    elif isinstance(value, list):
        return next((p for v in value if (p := _extra_problem(v, depth + 1))), None)
    return None


def clean_name(value: str | None) -> str | None:
    """A name from a source that cannot be asked again (an import), made to meet the webhook's rules
    instead of refused: control characters become spaces, and it is trimmed to MAX_NAME characters."""
    if value is None:
        return None
    text = " ".join(_CONTROL.sub(" ", _LONE_SURROGATE.sub("", value)).split())[:MAX_NAME].rstrip()
    return text if _visible(text) else None


def _visible(name: str) -> bool:
    """Whether a name shows anything: one of only zero-width or format characters (U+200B, U+FEFF…) is
    no name, and counted as one the emails greeted "Hi ," instead of using their fallback."""
    return any(unicodedata.category(c)[0] in "LNPS" for c in name)


def field_errors(exc: ValidationError) -> dict[str, str]:
    """Pydantic's errors as {field: message}, without echoing the input back."""
    errors: dict[str, str] = {}
    for err in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(p) for p in err["loc"]) or "body"
        errors.setdefault(field, err["msg"].removeprefix("Value error, "))
    return errors


def _normalised(email: str) -> str:
    return validate_email(email, check_deliverability=False).normalized.lower()


def normalised_email(email: str) -> str | None:
    """An address as intake stores it (contact.email), or None when it is not a valid address."""
    try:
        return _normalised(email)
    except EmailNotValidError:
        return None


def parse_signup(data: Any) -> SignupIn:
    """Validate a decoded JSON body or raise InvalidSignup with field errors."""
    if not isinstance(data, dict):
        raise InvalidSignup({"body": "must be a JSON object"})
    try:
        return SignupIn.model_validate(data)
    except ValidationError as exc:
        raise InvalidSignup(field_errors(exc)) from None
