"""Text from strangers (signup names, addresses) and from providers, shown literally in Streamlit markdown."""

import re

# Everything Streamlit's markdown gives a meaning to: CommonMark's punctuation, its :color[…] and
# :material/…: directives, emoji shortcodes, $…$ maths and "&" (which would start a character
# reference: "a&amp;b" must show as typed). HTML is already escaped by Streamlit.
_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~:$<>&])")


# What GitHub-flavoured markdown turns into a link without any markup: a bare web address. Streamlit
# looks for one after escapes are decoded and after whitespace or any punctuation or symbol ("'", "=",
# ",", "."), so every scheme and "www." is broken, whatever precedes it.
_BARE_LINK = re.compile(r"(?i)(?:(https?|ftp)(:)|(www)(\.))")
_WORD_JOINER = "\u2060"  # invisible, and it breaks the pattern the autolinker looks for


def literal(text: object) -> str:
    """`text` backslash-escaped so that markdown shows it exactly as typed: a name like
    "[x](http://evil)" or ":red-badge[FAKE]" stays text, never a link or a badge, and a bare
    "http://evil.example" is not made clickable either."""
    unlinked = _BARE_LINK.sub(lambda m: f"{m[1] or m[3]}{_WORD_JOINER}{m[2] or m[4]}", str(text))
    return _SPECIAL.sub(r"\\\1", unlinked)
