"""clean_name: how an import makes a stored name meet the webhook's rules instead of refusing the row."""

import pytest

from core.signups import MAX_NAME, clean_name, parse_signup


@pytest.mark.parametrize(("raw", "cleaned"), [
    (None, None),
    ("", None),
    ("  \t\r\n ", None),
    ("Zoë", "Zoë"),
    ("  Ann  Lee ", "Ann Lee"),
    ("Ann\r\nBcc: x@example.com", "Ann Bcc: x@example.com"),
    ("Al\x00ex", "Al ex"),
    ("Jo\ud800e", "Joe"),  # half a surrogate pair cannot be stored as UTF-8
    ("\u202eAnn\u2028Lee", "Ann Lee"),  # a bidi override and a line separator
    ("N" * 250, "N" * MAX_NAME),
    ("N" * 199 + " tail", "N" * 199),  # cut at the limit, no trailing space left
    ("\u200b", None), ("\ufeff\u200d ", None), ("\u0301", None),  # nothing to see: no name
])
def test_clean_name(raw, cleaned):
    assert clean_name(raw) == cleaned


@pytest.mark.parametrize("raw", ["Ann\r\nBcc: x@example.com", "N" * 250, "  Zoë Ångström  ", "Al\x00ex"])
def test_a_cleaned_name_is_one_the_webhook_accepts(raw):
    signup = parse_signup({"email": "a@example.com", "first_name": clean_name(raw)})
    assert signup.first_name == clean_name(raw)


@pytest.mark.parametrize("invisible", ["\u200b", "\u2060\ufeff", " \u200d ", "\u00ad"])
def test_a_name_of_only_invisible_characters_is_no_name_so_the_emails_use_their_fallback(invisible):
    # Kept, it made every email greet "Hi ," with nothing a reader could see.
    signup = parse_signup({"email": "a@example.com", "first_name": invisible, "business_name": invisible})
    assert (signup.first_name, signup.business_name) == (None, None)


@pytest.mark.parametrize("name", ["Zoë", "李", "O'Neil", "محمد", "Ṩ", "1st Choice Ltd", "-"])
def test_a_name_with_anything_visible_is_kept_as_sent(name):
    assert parse_signup({"email": "a@example.com", "first_name": name}).first_name == name


@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_name_in_a_signup_counts_as_no_name(blank):
    signup = parse_signup({"email": "a@example.com", "first_name": blank, "business_name": blank})
    assert (signup.first_name, signup.business_name) == (None, None)
