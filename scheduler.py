"""The worker: `python scheduler.py [--once] [--now ISO8601] [--no-api]`."""

import argparse
import sys
from datetime import UTC, datetime

from core.errors import ConfigError, first_line

EARLIEST_NOW = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_NOW = datetime(3000, 1, 1, tzinfo=UTC)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Nurture worker: dispatches sends and serves the intake API.")
    parser.add_argument("--once", action="store_true", help="run every job once, then exit (no API)")
    parser.add_argument("--now", type=_instant, help="start this run's clock at an ISO 8601 instant")
    parser.add_argument("--no-api", action="store_true", help="do not serve the HTTP intake API")
    return parser.parse_args(argv)


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--now needs an ISO 8601 instant such as 2025-12-01T09:00:00Z, not {text!r}")
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    # The worker reckons weeks either side of its clock (due times, retention), which overflow near
    # year 1 or 9999: refused here, not by a traceback halfway through a dispatch pass.
    if not EARLIEST_NOW <= value <= LATEST_NOW:
        raise argparse.ArgumentTypeError(f"--now must be between the years {EARLIEST_NOW.year} and "
                                         f"{LATEST_NOW.year}, not {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return _start(args)
    except KeyboardInterrupt:  # Ctrl-C during start-up, the second or so of imports included (`make run`'s Ctrl-C)
        return 130


def _start(args: argparse.Namespace) -> int:
    import sqlalchemy as sa  # after argparse, so --help stays instant

    from core.entrypoints import start_worker

    try:
        return start_worker(once=args.once, now=args.now, serve_api=not (args.no_api or args.once))
    except ConfigError as exc:
        print(f"nurture: {exc}", file=sys.stderr)
        return 2
    except sa.exc.SQLAlchemyError as exc:  # unreachable, missing or refusing database: one line, not a traceback
        print(f"nurture: the worker cannot use the database: {first_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
