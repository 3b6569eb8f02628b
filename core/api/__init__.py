"""The intake HTTP API. `create_app(services)` builds it; run it with `uvicorn core.api:app`
(or `uvicorn core.api:create_app --factory`)."""

import logging
import sys
from contextlib import asynccontextmanager

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.requests import ClientDisconnect
from uvicorn.config import STARTUP_FAILURE

from svix.webhooks import Webhook

from core import alerts, db
from core.api import health, intake, metrics, pages, resend_webhook, unsubscribe
from core.bootstrap import Services, build_services
from core.db_outages import DatabaseOutageLog
from core.errors import ConfigError, first_line
from core.heap import freeze_startup_objects
from core.intake import GroupCommitWriter
from core.logs import configure_logging

log = logging.getLogger(__name__)
_served: dict[str, FastAPI] = {}


def __getattr__(name: str) -> FastAPI:
    # DESIGN §2 runs the API as `uvicorn core.api:app`. Built on first access (PEP 562), not at import:
    # the worker and the tests import this package and must not get an engine of their own.
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if "app" not in _served:
        _served["app"] = create_app()
    return _served["app"]


def create_app(services: Services | None = None) -> FastAPI:
    """Build the API around existing services (the worker, tests) or fresh ones (uvicorn --factory)."""
    if services is not None:
        return _build_app(services, own_process=False)
    # uvicorn: this API is the whole process. Started on its own, it may be the first process to meet a new
    # database, as the worker and the dashboard may: it migrates as they do (under a lock, so several
    # uvicorn workers at once are safe).
    try:
        return _build_app(build_services(migrate=True), own_process=True)
    except ConfigError as exc:
        print(f"nurture: {exc}", file=sys.stderr, flush=True)
    except sa.exc.SQLAlchemyError as exc:
        print(f"nurture: the API cannot use the database: {first_line(exc)}", file=sys.stderr, flush=True)
    # One sentence, as the worker gives, not uvicorn's traceback; and uvicorn's own start-up failure code,
    # the one exit its --workers supervisor does not answer by starting the process again, for ever.
    raise SystemExit(STARTUP_FAILURE)


def _build_app(services: Services, *, own_process: bool) -> FastAPI:
    if own_process:  # LOG_FORMAT and LOG_LEVEL apply here as in the worker
        configure_logging(services.settings.log_format, services.settings.log_level)
    writer = GroupCommitWriter(services)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        writer.start()
        yield
        writer.stop()

    # No docs or schema: the endpoints are for a website backend and Resend, not for browsing.
    app = FastAPI(title="Nurture intake", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.services = services
    app.state.writer = writer
    app.state.rate_limiter = intake.ClientRateLimiter(services.settings.intake_rate_limit)
    origins = services.settings.cors_origin_list
    if origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=origins, allow_methods=["POST"],
            allow_headers=["Content-Type", "X-Webhook-Secret", "X-Webhook-Signature"],
        )
    app.state.resend_verifier = _resend_verifier(services.settings.resend_webhook_secret)
    app.state.signature_watch = alerts.SignatureFailureWatch()
    app.state.health_outage = DatabaseOutageLog("health", "health")
    for module in (intake, health, unsubscribe, resend_webhook, metrics):
        app.include_router(module.router)
    app.add_exception_handler(ClientDisconnect, _client_went_away)
    app.add_exception_handler(sa.exc.DBAPIError, _database_unavailable)
    if own_process:
        freeze_startup_objects()
    return app


async def _client_went_away(request: Request, _exc: ClientDisconnect) -> JSONResponse:
    # Not a server fault: without this, anyone could fill the error log with tracebacks by hanging up mid-body.
    log.info("client disconnected before sending the whole body", extra={"action": "http", "path": request.url.path})
    return intake.error_response(400, "the request body was cut short")


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    # The database is down, restarting or locked past the lock wait: a brief outage, answered as the intake
    # answers it (503, Retry-After), so Resend retries its event and a person is asked to try again, instead
    # of a 500 and a traceback per request. The path is not logged: an unsubscribe path holds its token.
    if not db.storage_unavailable(exc):
        raise exc  # a bug: Starlette answers 500 and logs its traceback
    log.warning("database unavailable: %s", first_line(exc), extra={"action": "http"})
    if request.url.path.startswith("/unsubscribe/"):
        response: Response = HTMLResponse(pages.try_again_later(), status_code=503)
    else:
        response = intake.error_response(503, "the database is unavailable right now; please retry")
    response.headers["Retry-After"] = "30"
    return response


def _resend_verifier(secret: str) -> Webhook | None:
    return Webhook(secret) if secret else None  # Settings has checked the secret (core/settings.py)
