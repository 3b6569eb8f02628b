"""The small HTML pages the API serves to people (unsubscribe). Every dynamic value is escaped."""

from html import escape

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:34rem;margin:4rem auto;padding:0 1rem;color:#1f2933}}
button{{background:#14532d;color:#fff;border:0;padding:.7rem 1.4rem;border-radius:6px;font-size:1rem;cursor:pointer}}
</style></head><body><h1>{title}</h1>{body}</body></html>"""


def page(title: str, body_html: str) -> str:
    """Wrap trusted body markup; callers escape what they put inside it."""
    return _PAGE.format(title=escape(title), body=body_html)


def confirm_unsubscribe(email_hint: str) -> str:
    # No action: the form posts back to the address the page was opened at, which is the public
    # link even when a proxy serves the API under a path prefix that the API itself never sees.
    return page("Unsubscribe?", (
        f"<p>Stop the Christmas 2025 emails to <strong>{escape(email_hint)}</strong>?</p>"
        '<form method="post">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Yes, unsubscribe me</button></form>'
        "<p>Nothing changes until you press the button.</p>"
    ))


def unsubscribed(email_hint: str) -> str:
    return page("You're unsubscribed", (
        f"<p><strong>{escape(email_hint)}</strong> will get no more emails from this campaign.</p>"
    ))


def forgotten() -> str:
    return page("You're unsubscribed", "<p>This address was removed from our records at its owner's request "
                "and gets no more emails from this campaign.</p>")


def test_link() -> str:
    return page("This was a test email", "<p>The unsubscribe link in a real email stops its recipient's emails "
                "at once. This one came from a test send, so it stops nothing.</p>")


def invalid_link() -> str:
    return page("This link is not valid", "<p>The unsubscribe link is incomplete or has been altered. "
                "Please use the link from the most recent email.</p>")


def try_again_later() -> str:
    return page("Please try again in a minute", "<p>We could not open our records just now, so nothing has "
                "changed yet. Please try again in a minute, from this page or the link in the email.</p>")


def mask_email(email: str) -> str:
    """Show enough of an address to recognise it without revealing it to whoever holds the link."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}{'•' * max(1, min(len(local) - 1, 6))}@{domain}"
