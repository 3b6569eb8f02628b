"""POST /webhook/christmas-signup: the rate limit (429), the contract's checks (401, 413, 422), then enroll."""

import hashlib
import hmac
import ipaddress
import json
import threading
import time
from collections import OrderedDict, deque

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from core.campaign import CHRISTMAS_2025
from core.enrollments import SignupRequest
from core.errors import InvalidSignup
from core.signups import parse_signup

router = APIRouter()
MAX_BODY = 64 * 1024
ACCEPTED_MESSAGE = "Email sequence will begin shortly"


class ClientRateLimiter:
    """Per-client sliding window of one minute; 0 turns it off.

    A client is its IPv4 address, or the /64 network of its IPv6 address: one IPv6 host usually
    holds a whole /64, and could otherwise take a fresh address for every request.
    """

    WINDOW_SECONDS = 60.0
    MAX_CLIENTS = 100_000  # beyond this many active clients, the longest idle is forgotten first

    def __init__(self, per_minute: int, clock=time.monotonic):
        self._limit = per_minute
        self._clock = clock
        # Ordered by each client's latest request, so idle clients are dropped from the front
        # at a constant cost per request, however many clients there are.
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, client: str) -> bool:
        if self._limit <= 0:
            return True
        key, now = client_key(client), self._clock()
        with self._lock:
            self._forget_idle(now, newcomer=key not in self._hits)
            hits = self._hits.get(key)
            if hits is None:
                hits = self._hits[key] = deque()
            self._hits.move_to_end(key)
            while hits and hits[0] <= now - self.WINDOW_SECONDS:
                hits.popleft()
            if len(hits) >= self._limit:
                return False
            hits.append(now)
            return True

    def _forget_idle(self, now: float, *, newcomer: bool) -> None:
        room = self.MAX_CLIENTS - 1 if newcomer else self.MAX_CLIENTS
        while self._hits:
            oldest = next(iter(self._hits.values()))
            if len(self._hits) <= room and oldest and oldest[-1] > now - self.WINDOW_SECONDS:
                return
            self._hits.popitem(last=False)


def client_key(address: str) -> str:
    """What the rate limit counts by: an IPv4 address as it is, an IPv6 address by its /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # not an address (a test client's name): counted as given
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped is not None:  # an IPv4 client seen through a dual-stack socket
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False))


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


def strict_json(body: bytes, *, max_depth: int | None = None):
    """Decode a request body as standard JSON; ValueError when it is not (too deep included).

    The decoder itself takes nesting nearly as deep as Python's recursion limit, which code that walks
    the result recursively cannot: max_depth refuses a body nested deeper than that.
    """
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if max_depth is not None and _depth(data) > max_depth:
        raise ValueError("nested too deeply")
    return data


def _depth(value) -> int:
    """How many arrays and objects deep a decoded JSON value goes (walked without recursion)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is not None:
            deepest = max(deepest, depth + 1)
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _secret_ok(request: Request, expected: str) -> bool:
    # Header values arrive decoded as latin-1: encoded back, they are the bytes the website sent, which
    # for a secret beyond ASCII are its UTF-8 bytes.
    given = request.headers.get("x-webhook-secret", "").encode("latin-1")
    return hmac.compare_digest(given, expected.encode())


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
    except Exception:  # storage trouble, which the writer has logged: say so plainly; the website may retry
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
