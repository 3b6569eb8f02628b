"""GET shows a confirm page (link scanners fetch GETs); POST unsubscribes at once (RFC 8058)."""

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from core import controls, db
from core.api import pages
from core.erasure import is_erased_address
from core.errors import InvalidToken, NotFound
from core.tables import contact_t
from core.unsubscribe import verify_token

router = APIRouter()


def _contact_email(services, contact_id: str) -> str | None:
    with db.read_transaction(services.engine) as conn:
        return conn.scalar(sa.select(contact_t.c.email).where(contact_t.c.id == contact_id))


def _resolve(request: Request, token: str) -> tuple[str, str] | HTMLResponse:
    services = request.app.state.services
    try:
        contact_id = verify_token(services.secret_key, token)
    except InvalidToken:
        return HTMLResponse(pages.invalid_link(), status_code=400)
    email = _contact_email(services, contact_id)
    if email is None:
        return HTMLResponse(pages.invalid_link(), status_code=404)
    if is_erased_address(email):  # a link in an old email: nothing left to stop, or to show
        return HTMLResponse(pages.forgotten())
    return contact_id, email


@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
def confirm(request: Request, token: str) -> HTMLResponse:
    resolved = _resolve(request, token)
    if isinstance(resolved, HTMLResponse):
        return resolved
    _, email = resolved
    return HTMLResponse(pages.confirm_unsubscribe(pages.mask_email(email)))


@router.post("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe(request: Request, token: str) -> HTMLResponse:
    resolved = _resolve(request, token)
    if isinstance(resolved, HTMLResponse):
        return resolved
    contact_id, email = resolved
    services = request.app.state.services
    detail = {"via": "unsubscribe link", "user_agent": request.headers.get("user-agent", "")[:300]}
    try:
        with db.write_transaction(services.engine) as conn:
            controls.unsubscribe_contact(conn, contact_id, actor="recipient", now=services.clock(), detail=detail)
    except NotFound:
        return HTMLResponse(pages.invalid_link(), status_code=404)
    return HTMLResponse(pages.unsubscribed(pages.mask_email(email)))
