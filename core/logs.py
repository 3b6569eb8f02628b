"""Logging set-up: plain text by default, one JSON object per line when LOG_FORMAT=json."""

import json
import logging
import sys

# LogRecord attributes that are not `extra` fields.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class _SkipExpectedOverruns(logging.Filter):
    """Drop APScheduler's "maximum number of running instances reached" for our own jobs.

    The dispatch job drains a backlog in one run and may outlive its one-second interval;
    with max_instances=1 the skipped tick is the intended behaviour, not a fault to report. A run
    that goes on far longer is reported by core.overruns instead.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in record.getMessage()


class _SkipInterruptedPoolReset(logging.Filter):
    """Drop SQLAlchemy's "Exception during reset or similar" when the exception is Ctrl-C.

    A KeyboardInterrupt landing while the pool takes a connection back is logged there with its
    traceback before it is passed on; the command then says "interrupted" in one line of its own.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        interrupted = bool(record.exc_info) and record.exc_info[0] is KeyboardInterrupt
        return not (interrupted and record.name.startswith("sqlalchemy.pool"))


def configure_logging(log_format: str = "text", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_SkipInterruptedPoolReset())  # on the handler: the pool's loggers are per pool class
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # APScheduler logs every job run at INFO; that drowns the log at a 1 s dispatch interval.
    # httpx logs every request URL at INFO, and a Discord webhook URL carries its token.
    for noisy in ("apscheduler", "alembic.runtime.migration", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("apscheduler.scheduler").addFilter(_SkipExpectedOverruns())
    # Under `uvicorn --factory` uvicorn has set up loggers of its own before the app is built:
    # send its lines through this handler too (JSON included). Its access log stays off, as in
    # the worker, because each line would carry an unsubscribe link's token.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
