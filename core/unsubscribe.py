"""Unsubscribe tokens: the contact id signed with HMAC-SHA256 under SECRET_KEY."""

import base64
import hashlib
import hmac

from core.errors import InvalidToken

_PURPOSE = b"nurture-unsubscribe-v1:"
# The token in a test email's links (Templates' send-test): it names no contact, so it stops no one.
TEST_TOKEN = "test"


def _sign(secret_key: str, contact_id: str) -> str:
    digest = hmac.new(secret_key.encode(), _PURPOSE + contact_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def make_token(secret_key: str, contact_id: str) -> str:
    return f"{contact_id}.{_sign(secret_key, contact_id)}"


def verify_token(secret_key: str, token: str) -> str:
    """The contact id a token was issued for, or InvalidToken for anything forged or altered."""
    contact_id, _, signature = token.partition(".")
    if not contact_id or not signature or len(token) > 200:
        raise InvalidToken("malformed unsubscribe token")
    if not hmac.compare_digest(signature.encode(), _sign(secret_key, contact_id).encode()):
        raise InvalidToken("unsubscribe token signature does not match")
    return contact_id


def unsubscribe_url(public_base_url: str, secret_key: str, contact_id: str) -> str:
    return f"{public_base_url.rstrip('/')}/unsubscribe/{make_token(secret_key, contact_id)}"


def unsubscribe_url_of_test_emails(public_base_url: str) -> str:
    return f"{public_base_url.rstrip('/')}/unsubscribe/{TEST_TOKEN}"


def unsubscribe_headers(url: str) -> dict[str, str]:
    """The headers every email carries, so mail clients offer one-click unsubscribe (RFC 8058)."""
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
