"""GET shows a confirm page (link scanners fetch GETs); POST unsubscribes at once (RFC 8058)."""

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from core import controls, db
from core.api import pages
from core.erasure import is_erased_address
from core.errors import InvalidToken, NotFound
from core.tables import contact_t
from core.unsubscribe import TEST_TOKEN, verify_token

router = APIRouter()


def _contact(services, contact_id: str):
    with db.read_transaction(services.engine) as conn:
        return conn.execute(sa.select(contact_t.c.email, contact_t.c.unsubscribed_at)
                            .where(contact_t.c.id == contact_id)).first()


def _resolve(request: Request, token: str) -> tuple[str, str, bool] | HTMLResponse:
    """(contact id, address, already unsubscribed), or the page that answers instead."""
    services = request.app.state.services
    if token == TEST_TOKEN:  # from a test email: answered (a mail client's one-click POST included), nothing changes
        return HTMLResponse(pages.test_link())
    try:
        contact_id = verify_token(services.secret_key, token)
    except InvalidToken:
        return HTMLResponse(pages.invalid_link(), status_code=400)
    contact = _contact(services, contact_id)
    if contact is None:
        return HTMLResponse(pages.invalid_link(), status_code=404)
    if is_erased_address(contact.email):  # a link in an old email: nothing left to stop, or to show
        return HTMLResponse(pages.forgotten())
    return contact_id, contact.email, contact.unsubscribed_at is not None


@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
def confirm(request: Request, token: str) -> HTMLResponse:
    resolved = _resolve(request, token)
    if isinstance(resolved, HTMLResponse):
        return resolved
    _, email, already = resolved
    if already:  # opened again later: say so rather than ask a question that changes nothing
        return HTMLResponse(pages.unsubscribed(pages.mask_email(email)))
    return HTMLResponse(pages.confirm_unsubscribe(pages.mask_email(email)))


@router.post("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe(request: Request, token: str) -> HTMLResponse:
    resolved = _resolve(request, token)
    if isinstance(resolved, HTMLResponse):
        return resolved
    contact_id, email, _ = resolved
    services = request.app.state.services
    detail = {"via": "unsubscribe link", "user_agent": request.headers.get("user-agent", "")[:300]}
    try:
        with db.write_transaction(services.engine) as conn:
            controls.unsubscribe_contact(conn, contact_id, actor="recipient", now=services.clock(), detail=detail)
    except NotFound:
        return HTMLResponse(pages.invalid_link(), status_code=404)
    return HTMLResponse(pages.unsubscribed(pages.mask_email(email)))
