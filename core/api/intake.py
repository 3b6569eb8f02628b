"""POST /webhook/christmas-signup: the rate limit (429), the contract's checks (401, 413, 422), then enroll."""

import hashlib
import hmac
import json
import logging
import threading
import time
from collections import deque

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from core.campaign import CHRISTMAS_2025
from core.enrollments import SignupRequest
from core.errors import InvalidSignup
from core.signups import parse_signup

log = logging.getLogger(__name__)
router = APIRouter()
MAX_BODY = 64 * 1024
ACCEPTED_MESSAGE = "Email sequence will begin shortly"


class ClientRateLimiter:
    """Per-client sliding window of one minute; 0 turns it off."""

    def __init__(self, per_minute: int, clock=time.monotonic):
        self._limit = per_minute
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, client: str) -> bool:
        if self._limit <= 0:
            return True
        now = self._clock()
        with self._lock:
            hits = self._hits.setdefault(client, deque())
            while hits and hits[0] <= now - 60:
                hits.popleft()
            if len(hits) >= self._limit:
                return False
            hits.append(now)
            if len(self._hits) > 10_000:  # forget idle clients so memory stays bounded
                self._hits = {k: v for k, v in self._hits.items() if v and v[-1] > now - 60}
            return True


def error_response(status: int, message: str, errors: dict[str, str] | None = None) -> JSONResponse:
    """The API's error body: status and message, and with field errors the `errors` and FastAPI-style `detail`."""
    body: dict = {"status": "error", "message": message}
    if errors is not None:
        body["errors"] = errors
        body["detail"] = [{"loc": ["body", *k.split(".")], "msg": v} for k, v in errors.items()]
    return JSONResponse(body, status_code=status)


async def read_capped_body(request: Request) -> bytes | None:
    """The body, or None once it grows past MAX_BODY (without reading the rest)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _reject_constant(name: str):
    # Python's json accepts NaN and Infinity, which are not JSON and no count or score can be.
    raise ValueError(f"{name} is not valid JSON")


def strict_json(body: bytes):
    """Decode a request body as standard JSON; ValueError when it is not (too deep included)."""
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _secret_ok(request: Request, expected: str) -> bool:
    given = request.headers.get("x-webhook-secret", "")
    return hmac.compare_digest(given.encode(), expected.encode())


def body_signature(secret: str, body: bytes) -> str:
    """What X-Webhook-Signature must say: `sha256=` and the hex HMAC-SHA256 of the raw body (GitHub's form)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _signature_ok(given: str, secret: str, body: bytes) -> bool:
    return hmac.compare_digest(given.strip().lower().encode(), body_signature(secret, body).encode())


@router.post("/webhook/christmas-signup", status_code=202)
async def christmas_signup(request: Request) -> JSONResponse:
    services = request.app.state.services
    settings = services.settings
    # Counted before the secret is checked, so the limit also slows anyone guessing the secret.
    client = request.client.host if request.client else "unknown"
    if not request.app.state.rate_limiter.allow(client):
        response = error_response(429, "too many signups from this client")
        response.headers["Retry-After"] = "60"  # the window is one minute
        return response
    secret = settings.webhook_secret
    # The website proves it knows the secret by sending it, or by signing the body with it (the
    # secret then never travels); a signature can only be checked once the body is read.
    signature = request.headers.get("x-webhook-signature") if "x-webhook-secret" not in request.headers else None
    if secret and signature is None and not _secret_ok(request, secret):
        return error_response(401, "missing or wrong X-Webhook-Secret (or X-Webhook-Signature)")
    body = await read_capped_body(request)
    if body is None:
        return error_response(413, f"body larger than {MAX_BODY} bytes")
    if secret and signature is not None and not _signature_ok(signature, secret, body):
        return error_response(401, "X-Webhook-Signature does not match the body")
    try:
        data = strict_json(body)
    except ValueError:
        return error_response(422, "body is not valid JSON", {"body": "must be a JSON object"})
    try:
        signup = parse_signup(data)
    except InvalidSignup as exc:
        return error_response(422, "invalid signup", exc.errors)
    started = time.perf_counter()
    future = request.app.state.writer.submit(SignupRequest(signup, source="webhook"))
    try:
        result = await future
    except Exception:  # storage trouble: say so plainly; the website may retry safely
        log.exception("signup not stored", extra={"action": "intake"})
        response = error_response(503, "the signup could not be stored right now; please retry")
        response.headers["Retry-After"] = "5"  # storage trouble is usually brief (a lock, a restart)
        return response
    finally:
        services.metrics.intake_wait.observe(time.perf_counter() - started)
    return JSONResponse(
        {"status": "accepted", "message": ACCEPTED_MESSAGE, "email": result.email,
         "campaign": CHRISTMAS_2025.name, "segment": result.segment, "duplicate": result.duplicate},
        status_code=202,
    )
