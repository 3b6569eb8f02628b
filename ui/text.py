"""Text from strangers (signup names, addresses) and from providers, shown literally in Streamlit markdown."""

import re

# Everything Streamlit's markdown gives a meaning to: CommonMark's punctuation, its :color[…] and
# :material/…: directives, emoji shortcodes and $…$ maths. HTML is already escaped by Streamlit.
_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~:$<>])")


def literal(text: object) -> str:
    """`text` backslash-escaped so that markdown shows it exactly as typed: a name like
    "[x](http://evil)" or ":red-badge[FAKE]" stays text, never a link or a badge."""
    return _SPECIAL.sub(r"\\\1", str(text))
