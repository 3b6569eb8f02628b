"""GET /health: configuration flags, database reachability and writability, worker heartbeat and queue counts."""

import logging

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from core import db, side_status
from core.status import read_status

log = logging.getLogger(__name__)
router = APIRouter()


@router.api_route("/health", methods=["GET", "HEAD"])  # uptime monitors often probe with HEAD
def health(request: Request) -> JSONResponse:
    services = request.app.state.services
    settings = services.settings
    body = {
        "status": "healthy",
        "testing_mode": settings.testing_mode,
        "notion_configured": settings.notion_configured,
        "resend_configured": not settings.dry_run,
        "discord_configured": settings.discord_configured,
        "dry_run": settings.dry_run,
        "mailer": services.mailer.name,
    }
    try:
        with db.read_transaction(services.engine) as conn:
            status = read_status(conn, services.clock())
            side = side_status.health_fields(conn, settings, services.clock())
    except sa.exc.SQLAlchemyError as exc:
        if db.storage_unavailable(exc):  # an outage: one line when it starts, not a traceback per probe
            request.app.state.health_outage.failed(exc)
        else:
            log.exception("health check could not read the database", extra={"action": "health"})
        body.update(status="unhealthy", database="unreachable")
        return JSONResponse(body, status_code=503)
    request.app.state.health_outage.succeeded()
    last_seen = status.worker_last_seen
    body.update(
        database="ok",
        testing_mode=status.switches.test_mode,  # the stored setting wins over TESTING_MODE
        sending_paused=status.switches.paused,
        pause_reason=status.switches.pause_reason,
        circuit_breaker_open=(status.switches.paused
                              and (status.switches.pause_reason or "").startswith("circuit breaker")),
        worker_last_seen=last_seen.isoformat() if last_seen else None,
        queue=status.queue,
        due_now=status.due_now,
    )
    body.update(side)
    # Reads can work while writes fail (a full disk, a read-only file): the parts that write say so.
    # Which parts only: the driver's words (host, role, database names) stay in the log.
    if failing := services.write_failures.current():
        body.update(status="degraded", database="writes failing", failing=sorted(failing))
        return JSONResponse(body, status_code=503)
    return JSONResponse(body)
