"""Step-state glyphs as tiny SVGs: they draw the same in every browser, with no emoji font needed.

The table shows one per step (as image data URIs); the legend and the timeline show the same
images inline in Markdown, so a state looks alike wherever it appears. (st.html strips inline
SVG, and st.image fetches each picture separately; data-URI images need neither.)
"""

import base64
from functools import cache

# state: (fill, ring, mark) — mark is drawn in white on the filled circle.
_STYLE = {
    "none": ("none", "#cbd5e1", ""),
    "waiting": ("none", "#94a3b8", ""),
    "due": ("#fde68a", "#d97706", ""),
    "sending": ("#93c5fd", "#2563eb", ""),
    "sent": ("#16a34a", "#16a34a", "check"),
    "delivered": ("#15803d", "#15803d", "double"),
    "opened": ("#2563eb", "#2563eb", "dot"),
    "clicked": ("#7c3aed", "#7c3aed", "star"),
    "bounced": ("#b91c1c", "#b91c1c", "bar"),
    "failed": ("#dc2626", "#dc2626", "cross"),
    "cancelled": ("#64748b", "#64748b", "bar"),
    "skipped": ("#94a3b8", "#94a3b8", "skip"),
}
_MARKS = {
    "": "",
    "check": '<path d="M6.5 12.5l3.5 3.5 7.5-8" fill="none" stroke="#fff" stroke-width="2.6"/>',
    "double": '<path d="M4.5 12.5l3 3 6-7M10.5 15.5l1 1 7-8.5" fill="none" stroke="#fff" stroke-width="2.2"/>',
    "dot": '<circle cx="12" cy="12" r="3.6" fill="#fff"/>',
    "star": '<path d="M12 5.5l1.9 4.1 4.4.4-3.3 3 1 4.4-4-2.3-4 2.3 1-4.4-3.3-3 4.4-.4z" fill="#fff"/>',
    "bar": '<path d="M7 12h10" stroke="#fff" stroke-width="2.8"/>',
    "cross": '<path d="M8 8l8 8M16 8l-8 8" stroke="#fff" stroke-width="2.6"/>',
    "skip": '<path d="M7.5 8l4 4-4 4M12.5 8l4 4-4 4" fill="none" stroke="#fff" stroke-width="2.2"/>',
}
LEGEND = ("waiting", "due", "sending", "sent", "delivered", "opened", "clicked", "failed", "bounced", "cancelled",
          "skipped")


@cache
def svg(state: str, size: int = 24) -> str:
    """The glyph of a step state as an SVG document (its <title> names the state)."""
    fill, ring, mark = _STYLE[state]
    radius = 4 if state == "none" else 9
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" viewBox="0 0 24 24">'
            f"<title>{state}</title>"
            f'<circle cx="12" cy="12" r="{radius}" fill="{fill}" stroke="{ring}" stroke-width="2"/>'
            f"{_MARKS[mark]}</svg>")


@cache
def data_uri(state: str, size: int = 24) -> str:
    """The glyph as a data URI: for st.column_config.ImageColumn cells and Markdown images."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg(state, size).encode()).decode()


def inline(state: str, size: int = 20) -> str:
    """The glyph as a Markdown image, to sit inside a line of text."""
    return f"![{state}]({data_uri(state, size)})"


# "due" is the step a sequence releases next, possibly days ahead; "due" alone reads as "going now".
_SHOWN_AS = {"due": "next up"}


def legend() -> str:
    """Markdown naming every glyph the Signups table uses; render it with unsafe_allow_html=True.

    Each glyph and its label sit in one no-wrap span, so a line that wraps breaks only between
    entries, never leaving a ✗ at a line's end and "failed" below it. A non-breaking space is not
    enough: browsers may break after an image even before one (CSS Text 3, for web compatibility).
    """
    return " &nbsp; ".join(f'<span style="white-space: nowrap">{inline(state, 16)} {_SHOWN_AS.get(state, state)}</span>'
                           for state in LEGEND)
