"""Unsubscribe tokens: the contact id signed with SECRET_KEY; anything forged or altered is refused."""

import base64
import hashlib
import hmac

import pytest

from core.errors import InvalidToken
from core.unsubscribe import make_token, unsubscribe_url, verify_token

KEY = "a-secret-key-for-tests-only-0123456789"
CONTACT = "3f2a9c1e5b7d4e8f9a0b1c2d3e4f5a6b"


def test_a_token_round_trips_to_its_contact_id():
    assert verify_token(KEY, make_token(KEY, CONTACT)) == CONTACT


def test_the_token_scheme_stays_the_one_in_links_already_sent():
    # Links sit in inboxes for months: a changed scheme would turn every one of them into a 4xx.
    digest = hmac.new(KEY.encode(), b"nurture-unsubscribe-v1:" + CONTACT.encode(), hashlib.sha256).digest()
    assert make_token(KEY, CONTACT) == f"{CONTACT}.{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"


def test_tokens_are_stable_for_one_contact_and_differ_between_contacts():
    assert make_token(KEY, CONTACT) == make_token(KEY, CONTACT)
    assert make_token(KEY, CONTACT) != make_token(KEY, "another-contact")


def test_a_token_is_url_safe():
    token = make_token(KEY, CONTACT)
    assert all(c.isalnum() or c in "-_." for c in token)


def test_the_url_joins_the_public_base_and_the_token_without_a_double_slash():
    url = unsubscribe_url("https://mail.example.com/", KEY, CONTACT)
    assert url == f"https://mail.example.com/unsubscribe/{make_token(KEY, CONTACT)}"
    assert verify_token(KEY, url.rsplit("/", 1)[1]) == CONTACT


def test_a_token_with_an_altered_contact_id_is_refused():
    _, signature = make_token(KEY, CONTACT).split(".")
    with pytest.raises(InvalidToken):
        verify_token(KEY, f"{CONTACT[:-1]}0.{signature}")


def test_a_token_with_an_altered_signature_is_refused():
    contact_id, signature = make_token(KEY, CONTACT).split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    with pytest.raises(InvalidToken):
        verify_token(KEY, f"{contact_id}.{flipped}")


def test_a_token_signed_with_another_key_is_refused():
    with pytest.raises(InvalidToken):
        verify_token(KEY, make_token("some-other-key", CONTACT))


def test_someone_elses_signature_cannot_be_moved_onto_a_contact_id():
    _, other_signature = make_token(KEY, "victim").split(".")
    with pytest.raises(InvalidToken):
        verify_token(KEY, f"{CONTACT}.{other_signature}")


@pytest.mark.parametrize("token", ["", ".", "no-signature", f"{CONTACT}.", ".signature-only",
                                   f"{CONTACT}.{'x' * 200}", "über.ß"])
def test_a_malformed_token_is_refused(token):
    with pytest.raises(InvalidToken):
        verify_token(KEY, token)
