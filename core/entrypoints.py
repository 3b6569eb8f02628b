"""What each process does at start-up, as a list of steps (listmonk's main)."""

import logging
from datetime import datetime

from core import db, switches
from core.bootstrap import Services, build_services
from core.clock import clock_starting_at
from core.heap import freeze_startup_objects
from core.heartbeat import new_worker_id
from core.logs import configure_logging
from core.settings import load_settings
from core.worker import ApiThread, WorkerJobs, run_forever
from core.worker_jobs import register_jobs

log = logging.getLogger(__name__)


def start_worker(*, once: bool, now: datetime | None, serve_api: bool) -> int:
    settings = load_settings()
    configure_logging(settings.log_format, settings.log_level)
    clock = clock_starting_at(now) if now else None
    services = build_services(settings, clock=clock, migrate=True)
    _note_a_pause(services)
    jobs = WorkerJobs(services, new_worker_id())
    register_jobs(jobs, once=once)
    if once:
        try:
            return jobs.run_once()
        finally:
            services.close()
    api = ApiThread(services, settings.api_host, settings.api_port) if serve_api else None
    freeze_startup_objects()
    return run_forever(jobs, api)


def _note_a_pause(services: Services) -> None:
    """A worker that starts with sending paused sends nothing: its log says so at once, for an operator
    who reads the log rather than /health or the dashboard (a restored backup starts paused)."""
    with db.read_transaction(services.engine) as conn:
        state = switches.read(conn)
    if state.paused:
        reason = f" ({state.pause_reason})" if state.pause_reason else ""
        log.warning("sending is paused%s: no email goes until it is resumed, in the dashboard's Settings or "
                    "with `python -m core resume`", reason, extra={"action": "start"})
