"""POST /webhook/resend: Resend's event webhook, verified with Svix signatures (5-minute tolerance)."""

import json
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from svix.webhooks import Webhook, WebhookVerificationError

from core import alerts, db
from core.api.intake import MAX_BODY, read_capped_body
from core.provider_events import record_provider_event

log = logging.getLogger(__name__)
router = APIRouter()


@router.post("/webhook/resend")
async def resend_events(request: Request) -> JSONResponse:
    services = request.app.state.services
    verifier: Webhook | None = request.app.state.resend_verifier
    if verifier is None:
        return JSONResponse({"status": "error", "message": "RESEND_WEBHOOK_SECRET is not configured"}, 404)
    body = await read_capped_body(request)
    if body is None:
        return JSONResponse({"status": "error", "message": f"body larger than {MAX_BODY} bytes"}, 413)
    try:
        verifier.verify(body, dict(request.headers))
        event = json.loads(body)
    except (WebhookVerificationError, ValueError) as exc:
        log.warning("rejected a Resend webhook: %s", exc, extra={"action": "resend_webhook"})
        alerts.note_signature_failure(services, request.app.state.signature_watch)
        return JSONResponse({"status": "error", "message": "invalid signature"}, 400)
    if not isinstance(event, dict):
        return JSONResponse({"status": "error", "message": "event must be a JSON object"}, 400)
    with db.write_transaction(services.engine) as conn:
        outcome = record_provider_event(conn, request.headers["svix-id"], event, services.clock())
    return JSONResponse({"status": "ok", "result": outcome})
