"""Render the campaign's emails: subject, HTML part and text part, from Jinja2 templates.

Pure: the only I/O is reading templates from this package's `templates/` directory.
"""

import functools
import re
import textwrap
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from core.campaign import CHRISTMAS_2025, Segment, Step

_TEMPLATES = Path(__file__).parent / "templates"
_SENDER = "The team at Nurture Systems"
_FIRST_NAME_FALLBACK = "there"
_BUSINESS_NAME_FALLBACK = "your business"
# What an inbox shows of a subject before cutting it: a long name is shortened to fit the rest.
SUBJECT_LIMIT = 70
# Plain-text parts are written one paragraph a line and wrapped here, once names are in.
_TEXT_WIDTH = 76
_LIST_MARKER = re.compile(r"^(?:[-*]|\d+\.) ")
_NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


@dataclass(frozen=True)
class EmailContext:
    """Who an email is for: their names, their segment and their assessment counts."""

    first_name: str | None
    business_name: str | None
    segment: str  # "CRITICAL" | "URGENT" | "OPTIMIZE"
    red_systems: int | None = None
    orange_systems: int | None = None
    booking_url: str = "https://example.com/book"  # call-to-action target
    season_over: bool = False  # sent after the campaign's season (Christmas) is past: no "before Christmas"

    def __post_init__(self) -> None:
        # An unknown segment would silently fall into every template's `else` branch.
        if self.segment not in set(Segment):
            raise ValueError(f"unknown segment {self.segment!r}; expected one of {', '.join(Segment)}")


@dataclass(frozen=True)
class RenderedEmail:
    """One email, ready to hand to a Mailer."""

    subject: str
    html: str
    text: str


def render_step(step: Step, ctx: EmailContext, *, unsubscribe_url: str, postal_address: str) -> RenderedEmail:
    """Render one campaign step for one contact: a subject, an HTML part and a text part."""
    first_name = _mailable(_clean(ctx.first_name))
    business_name = _mailable(_clean(ctx.business_name))
    variables = {
        "first_name": first_name or _FIRST_NAME_FALLBACK,
        "business_name": business_name or _BUSINESS_NAME_FALLBACK,
        "has_business_name": bool(business_name),
        "segment": Segment(ctx.segment).value,
        "red": _count(ctx.red_systems),
        "orange": _count(ctx.orange_systems),
        "booking_url": ctx.booking_url,
        "unsubscribe_url": unsubscribe_url,
        "postal_address": postal_address.strip(),
        "season_over": ctx.season_over,
        "step_number": step.number,
        "total_steps": len(CHRISTMAS_2025.steps),
        "subject": _subject(step.subject_for(ctx.season_over), first_name, business_name),
    }
    html = _environment("html").get_template(f"{step.template}.html.j2").render(variables)
    text = _environment("text").get_template(f"{step.template}.txt.j2").render(variables)
    return RenderedEmail(subject=variables["subject"], html=html, text=_tidy_text(text))


def sample_context(segment: str, *, season_over: bool = False) -> EmailContext:
    """Plausible sample data for previewing the templates of one segment in the dashboard."""
    red, orange = {
        Segment.CRITICAL: (3, 2),
        Segment.URGENT: (1, 2),
        Segment.OPTIMIZE: (0, 1),
    }[Segment(segment)]
    return EmailContext(
        first_name="Alex",
        business_name="Hollybrook Bakery",
        segment=Segment(segment).value,
        red_systems=red,
        orange_systems=orange,
        season_over=season_over,
    )


@functools.cache
def _environment(kind: str) -> Environment:
    # Built on first use, not at import, so importing core stays free of file access.
    env = Environment(
        loader=FileSystemLoader(_TEMPLATES),
        autoescape=kind == "html",  # names come from a public form: escape them in HTML
        undefined=StrictUndefined,  # a typo in a template must fail the test suite, not reach an inbox
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["systems"] = _systems
    env.filters["full_stop"] = _full_stop
    env.globals["sender"] = _SENDER
    return env


# Bidirectional controls (embeddings, overrides, isolates): a name holding U+202E would display the
# rest of its subject or paragraph reversed. Arabic and Hebrew text needs none of them to show right.
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _clean(value: str | None) -> str:
    """Trim a name, fold control characters and line breaks into single spaces, drop bidi controls."""
    if not value:
        return ""
    # Names reach the Subject header: a CR/LF there could inject headers of its own.
    spaced = "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in value if ch not in _BIDI_CONTROLS)
    return " ".join(spaced.split())


# What a mail client would turn into a link: a scheme, "www.", an address, or a dotted host name ("evil.com/refund",
# "xn--…"). Anyone can sign anyone up, so a name like that would have our domain deliver a stranger's link.
_LINKABLE = re.compile(r"://|www\.|@|[^\s.]\.(?:xn--|[^\W\d_]{2})", re.IGNORECASE)


def _mailable(name: str) -> str:
    """The name, or "" (the email's fallback) when it would show as a link; what is stored stays as it was."""
    return "" if _LINKABLE.search(name) else name


def _subject(template: str, first_name: str, business_name: str) -> str:
    if not first_name:
        # "Your results, there" reads oddly; drop the trailing address instead.
        template = re.sub(r",\s*\{first_name\}", "", template)
    room = SUBJECT_LIMIT - len(template.format(first_name="", business_name=""))
    subject = template.format(
        first_name=_truncate(first_name or _FIRST_NAME_FALLBACK, room),
        business_name=_truncate(business_name or _BUSINESS_NAME_FALLBACK, room),
    )
    return " ".join(subject.split())


def _truncate(name: str, room: int) -> str:
    if len(name) <= room:
        return name
    return name[: room - 1].rstrip(" ,") + "…"


def _count(value: int | None) -> int | None:
    """A usable count, or None when the assessment did not give one."""
    if value is None or isinstance(value, bool) or value < 0:
        return None
    return int(value)


def _systems(count: int) -> str:
    """'one system', 'three systems', '12 systems': counts read better as words in prose."""
    word = _NUMBER_WORDS[count] if count < len(_NUMBER_WORDS) else str(count)
    return f"{word} system" if count == 1 else f"{word} systems"


def _full_stop(words: str) -> str:
    """End a sentence on `words`: 'Acme Ltd.' already ends with a stop, so it gets no second one."""
    return words if words.endswith((".", "!", "?", "…")) else f"{words}."


def _tidy_text(text: str) -> str:
    """Wrap long lines and drop the stray blank lines conditionals leave behind."""
    lines = [_wrap(line.rstrip()) for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)) + "\n"


@functools.lru_cache(maxsize=4096)  # most paragraphs are shared by every contact of a segment
def _wrap(line: str) -> str:
    if len(line) <= _TEXT_WIDTH:
        return line
    marker = _LIST_MARKER.match(line)
    return textwrap.fill(
        line,
        _TEXT_WIDTH,
        subsequent_indent=" " * len(marker.group(0)) if marker else "",
        break_long_words=False,  # never split a URL: it would stop being clickable
        break_on_hyphens=False,
    )
