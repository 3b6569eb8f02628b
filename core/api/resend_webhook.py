"""POST /webhook/resend: Resend's event webhook, verified with Svix signatures (5-minute tolerance)."""

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from svix.webhooks import Webhook, WebhookVerificationError

from core import alerts, db
from core.api.intake import MAX_BODY, error_response, read_capped_body, strict_json
from core.provider_events import record_provider_event

log = logging.getLogger(__name__)
router = APIRouter()
MAX_MESSAGE_ID = 100  # provider_event.svix_id
# Resend's events go 4 levels deep; the redaction and the audit detail walk them recursively.
MAX_EVENT_DEPTH = 32


@router.post("/webhook/resend")
async def resend_events(request: Request) -> JSONResponse:
    services = request.app.state.services
    verifier: Webhook | None = request.app.state.resend_verifier
    if verifier is None:
        return error_response(404, "RESEND_WEBHOOK_SECRET is not configured")
    body = await read_capped_body(request)
    if body is None:
        return error_response(413, f"body larger than {MAX_BODY} bytes")
    try:
        verifier.verify(body, dict(request.headers))
    except (WebhookVerificationError, ValueError) as exc:
        log.warning("rejected a Resend webhook: %s", exc, extra={"action": "resend_webhook"})
        alerts.note_signature_failure(services, request.app.state.signature_watch)
        return error_response(400, "invalid signature")
    # Svix signs under either header family; verify() accepted one of them.
    message_id = request.headers.get("svix-id") or request.headers.get("webhook-id", "")
    if len(message_id) > MAX_MESSAGE_ID:  # cut short, two ids could pass for one and drop an event
        return error_response(400, f"svix-id longer than {MAX_MESSAGE_ID} characters")
    try:  # signed, so from Resend: a body it cannot parse is a fault to log, not someone probing
        event = strict_json(body, max_depth=MAX_EVENT_DEPTH)
    except ValueError as exc:
        log.warning("a signed Resend webhook is not valid JSON: %s", exc, extra={"action": "resend_webhook"})
        return error_response(400, "body is not valid JSON")
    if not isinstance(event, dict):
        return error_response(400, "event must be a JSON object")
    with db.write_transaction(services.engine) as conn:
        outcome = record_provider_event(conn, message_id, event, services.clock())
    return JSONResponse({"status": "ok", "result": outcome})
