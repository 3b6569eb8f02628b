"""ui.text.literal: a stranger's text reaches Streamlit's markdown shown as typed, and never as a link."""

import re

import pytest

from ui.text import literal

JOINER = "\u2060"  # the invisible character literal() puts inside an address
# CommonMark decodes a backslash before any ASCII punctuation into the character itself.
_BACKSLASH_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
# What Streamlit's GFM autolinker looks for in the decoded text. It also demands whitespace or
# punctuation before the match; leaving that out makes this check stricter than Streamlit.
_AUTOLINKED = re.compile(r"(?i)https?://|www\.")

NAMES = [
    "'http://evil.example",
    "=http://evil.example",
    "Bob,https://evil.example",
    "x.www.evil.example",
    "http&colon;//evil.example",
    "&#104;ttp://evil.example",
    "HTTPS://EVIL.EXAMPLE and WWW.EVIL.EXAMPLE",
    "(www.evil.example) ftp://evil.example",
    "ann@www.acme.com",
    "[x](http://evil.example)",
    ":red-badge[FAKE] $x^2$ <b>bold</b>",
    "Tom & Jerry's",
    "a&amp;b",
    r"back\slash \: \&",
    "x*y*z@example.com",
]


def decoded(markdown: str) -> str:
    """The text markdown shows for `markdown`, once its backslash escapes are decoded."""
    return _BACKSLASH_ESCAPE.sub(r"\1", markdown)


@pytest.mark.parametrize("name", NAMES)
def test_a_name_is_shown_exactly_as_typed(name):
    assert decoded(literal(name)).replace(JOINER, "") == name


@pytest.mark.parametrize("name", NAMES)
def test_no_address_in_a_name_is_left_for_the_autolinker_whatever_precedes_it(name):
    assert not _AUTOLINKED.search(decoded(literal(name)))


@pytest.mark.parametrize("name", NAMES)
def test_every_ampersand_is_escaped_so_no_character_reference_is_decoded(name):
    assert not re.search(r"(?<!\\)&", literal(name))


def test_an_ampersand_is_escaped_and_a_scheme_is_broken_wherever_it_stands():
    assert literal("Tom & Jerry's") == r"Tom \& Jerry's"
    assert literal("a&amp;b") == r"a\&amp;b"
    assert literal("=http://x") == f"=http{JOINER}\\://x"
    assert literal("x.www.y") == f"x\\.www{JOINER}\\.y"


def test_text_without_an_address_gains_no_invisible_characters():
    assert JOINER not in literal("Ann Lee, Acme & Co. (est. 1999) wwwx httpd")
