"""`python -m core <command>`: operations from a terminal. Exit codes: 0 ok, 1 failed, 2 bad usage/config."""

import argparse
import csv
import json
import sys

from core import db, queries, switches
from core.bootstrap import build_services
from core.errors import ConfigError, NurtureError


def _stats(services, args) -> int:
    with db.read_transaction(services.engine) as conn:
        data = queries.stats(conn)
    if args.json:
        print(json.dumps(data))
    else:
        print(f"contacts {data['contacts']}, enrollments {data['enrollments']}")
        print("segments: " + ", ".join(f"{k} {v}" for k, v in data["segments"].items()))
        print("sends:    " + ", ".join(f"{k} {v}" for k, v in data["sends"].items()))
        print(f"unsubscribed {data['unsubscribed']}, suppressed {data['suppressed']}")
    return 0


def _pause(services, args) -> int:
    with db.write_transaction(services.engine) as conn:
        switches.set_paused(conn, True, actor="cli", now=services.clock(), reason=args.reason or "paused from the CLI")
    print("sending paused: the worker sends nothing until `python -m core resume`")
    return 0


def _resume(services, _args) -> int:
    with db.write_transaction(services.engine) as conn:
        switches.set_paused(conn, False, actor="cli", now=services.clock())
    print("sending resumed")
    return 0


def _export(services, args) -> int:
    out = open(args.output, "w", newline="", encoding="utf-8") if args.output else sys.stdout
    try:
        writer = csv.DictWriter(out, fieldnames=queries.EXPORT_COLUMNS)
        writer.writeheader()
        count = 0
        with db.read_transaction(services.engine) as conn:
            for row in queries.export_rows(conn):
                for key in ("enrolled_at", "unsubscribed_at", "suppressed_at"):
                    row[key] = queries.as_iso(row[key])
                writer.writerow(row)
                count += 1
    finally:
        if args.output:
            out.close()
    if args.output:
        print(f"wrote {count} contacts to {args.output}", file=sys.stderr)
    return 0


def _db_upgrade(services, _args) -> int:
    db.upgrade(services.engine)
    with db.write_transaction(services.engine) as conn:
        switches.seed(conn, test_mode=services.settings.testing_mode, now=services.clock())
    print(f"database at revision {db.current_revision(services.engine)}")
    return 0


def _run(_services, _args) -> int:
    from core.runner import run_all

    return run_all()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="Nurture operations.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("stats", help="counts of contacts, enrollments, segments and sends")
    p.add_argument("--json", action="store_true", help="print the machine-readable document")
    p.set_defaults(handler=_stats)
    p = sub.add_parser("pause", help="pause all sending (the dashboard's switch)")
    p.add_argument("--reason", help="why, for the audit trail")
    p.set_defaults(handler=_pause)
    sub.add_parser("resume", help="resume sending").set_defaults(handler=_resume)
    p = sub.add_parser("export", help="CSV of contacts with segment and per-step status")
    p.add_argument("-o", "--output", help="file to write (default: standard output)")
    p.set_defaults(handler=_export)
    p = sub.add_parser("db", help="database maintenance")
    dbsub = p.add_subparsers(dest="db_command", required=True, metavar="SUBCOMMAND")
    dbsub.add_parser("upgrade", help="apply pending migrations").set_defaults(handler=_db_upgrade)
    p = sub.add_parser("run", help="start the worker and the dashboard; Ctrl-C stops both")
    p.set_defaults(handler=_run, no_services=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "no_services", False):
            return args.handler(None, args)
        services = build_services()
        try:
            return args.handler(services, args)
        finally:
            services.close()
    except ConfigError as exc:
        print(f"nurture: {exc}", file=sys.stderr)
        return 2
    except NurtureError as exc:
        print(f"nurture: {exc}", file=sys.stderr)
        return 1
