"""`python -m core <command>`: operations from a terminal. Exit codes: 0 ok, 1 failed, 2 bad usage/config."""

import argparse
import json
import math
import os
import sys

from pathlib import Path

import sqlalchemy as sa

from core import actions, backup, cli_notion, csv_export, db, erasure, output_files, queries, switches
from core.bootstrap import build_services
from core.campaign import Segment
from core.errors import AlreadyErased, ConfigError, InvalidSignup, NurtureError, UsageError, first_line
from core.ids import new_id
from core.logs import configure_logging
from core.notion import store as notion_store
from core.settings import load_settings
from core.signups import parse_signup


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
    if args.output is None:
        with db.read_transaction(services.engine) as conn:
            csv_export.write_contacts(sys.stdout, queries.export_rows(conn))
        return 0
    target = Path(args.output)
    output_files.refuse_database_files(target, services.settings.database_url)
    output_files.refuse_secret_key_file(target, services.settings.data_dir)
    with output_files.replacing(target) as out, db.read_transaction(services.engine) as conn:
        count = csv_export.write_contacts(out, queries.export_rows(conn))
    print(f"wrote {count} contacts to {args.output}", file=sys.stderr)
    return 0


def _db_upgrade(services, _args) -> int:
    print(f"database at revision {db.current_revision(services.engine)}")
    return 0


def _backup(services, args) -> int:
    now = services.clock()
    if services.settings.is_sqlite:
        folder = Path(args.output_dir or Path(services.settings.data_dir) / "backups")
        target = backup.backup_sqlite(services.settings.database_url, folder, now)  # OSError: main says which folder
        print(f"backed up to {target} (sending is paused in the copy: restored, it sends nothing until resumed)")
    else:
        print("PostgreSQL is backed up with pg_dump; run:")
        print(backup.pg_dump_command(services.settings.database_url, now))
    return 0


def _forget(services, args) -> int:
    try:
        with db.write_transaction(services.engine) as conn:
            linked = notion_store.has_linked_page(conn, args.email.strip().lower())  # before the address is replaced
            erased = erasure.forget(conn, args.email, actor="cli", now=services.clock())
    except AlreadyErased as exc:  # a repeated request (a retried script, a second ticket) is already done
        print(exc)
        return 0
    print(f"erased {args.email}: personal data removed, sends stopped; kept hash {erased.digest[:12]}… "
          "to refuse re-enrollment")
    if erased.held:
        emails = "1 email of theirs was" if erased.held == 1 else f"{erased.held} emails of theirs were"
        print(f"{emails} already being sent: the address and names it went with are kept apart until it settles "
              "(a retry must repeat it exactly), then deleted: within minutes, or a day at most, of sending running.")
    if services.settings.notion_configured:
        print("Notion: their page is overwritten with the placeholder at the next sync." if linked else
              "Notion: no page of theirs was linked, so none is written; if the Email Sequence database holds "
              "a row for this address (one the original system made), delete it there by hand.")
    return 0


def _import(services, args) -> int:
    from core import csv_import  # the intake's enrollment code: loaded for `import` alone, not at every start

    try:
        with open(args.csv, encoding="utf-8-sig", newline="") as fh:
            plan = csv_import.plan_import(services, fh)
    except OSError as exc:
        raise NurtureError(f"cannot read {args.csv}: {exc.strerror}") from None
    except NurtureError as exc:  # the file itself: not UTF-8, not CSV, no header line
        raise NurtureError(f"{args.csv}: {exc}") from None
    for line, reason in plan.rejects:
        print(f"line {line}: rejected: {reason}")
    for line, email in plan.known:
        print(f"line {line}: already known, left alone: {email}")
    for line, email in plan.erased:
        print(f"line {line}: refused: this person was erased (forget) and is never re-enrolled: {email}")
    print(f"{len(plan.new)} new, {len(plan.known)} already known, {len(plan.erased)} refused as erased, "
          f"{len(plan.rejects)} rejected")
    if args.apply:
        print(f"enrolled {csv_import.apply_import(services, plan)} contacts")
    else:
        print("dry run: nothing was written; add --apply to enroll the new contacts")
    return 1 if plan.all_refused else 0  # so a script notices a file in which nothing could be imported


def _send_test(services, args) -> int:
    payload = {"to": args.email, "step": args.step, "segment": args.segment, "request_id": new_id()}
    with db.write_transaction(services.engine) as conn:
        action_id = actions.request_action(conn, "send_test", payload, requested_by="cli", now=services.clock())
    try:
        print(f"queued a test of step {args.step} ({args.segment}) to {args.email}; waiting for the worker…")
        result = actions.wait_for(services, action_id, timeout=args.wait)
    except KeyboardInterrupt:  # Ctrl-C ends the wait, not the request, which is already committed
        print("nurture: interrupted; the test email stays queued and goes if scheduler.py runs within the hour",
              file=sys.stderr)
        return 130
    if result is None:
        print("no worker picked it up yet; it is sent if scheduler.py runs within the hour of asking")
        return 1
    status, text = result
    print(text)
    return 0 if status == "done" else 1


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
    p.add_argument("--reason", type=_text, help="why, for the audit trail")
    p.set_defaults(handler=_pause)
    sub.add_parser("resume", help="resume sending").set_defaults(handler=_resume)
    p = sub.add_parser("export", help="CSV of contacts with segment and per-step status")
    p.add_argument("-o", "--output", type=_file_name, help="file to write (default: standard output)")
    p.set_defaults(handler=_export)
    p = sub.add_parser("db", help="database maintenance")
    dbsub = p.add_subparsers(dest="db_command", required=True, metavar="SUBCOMMAND")
    dbsub.add_parser("upgrade", help="create the database or apply pending migrations").set_defaults(
        handler=_db_upgrade, creates_database=True)
    p = sub.add_parser("backup", help="back up the database (SQLite) or print the pg_dump line")
    p.add_argument("--output-dir", type=_folder_name, help="folder for SQLite backups (default: DATA_DIR/backups)")
    p.set_defaults(handler=_backup, leaves_schema=True)
    p = sub.add_parser("forget", help="erase a person's data; they are never re-enrolled")
    p.add_argument("email", type=_email_address)
    p.set_defaults(handler=_forget)
    p = sub.add_parser("import", help="bulk-enrol a CSV (dry run unless --apply)")
    p.add_argument("csv", help="a CSV file with a header line naming at least 'email'")
    p.add_argument("--apply", action="store_true", help="enroll the new contacts (default: preview only)")
    p.set_defaults(handler=_import)
    p = sub.add_parser("send-test", help="send one step's email to an address, through the worker")
    p.add_argument("email", type=_email_address, help="where the test goes (its subject starts [TEST])")
    p.add_argument("--step", type=int, choices=range(1, 8), default=1, metavar="1..7", help="the step (default 1)")
    p.add_argument("--segment", choices=[s.value for s in Segment], default="CRITICAL",
                   help="the segment's copy (default CRITICAL)")
    p.add_argument("--wait", type=_seconds, default=30.0, help="seconds to wait for the worker (default 30)")
    p.set_defaults(handler=_send_test)
    p = sub.add_parser("run", help="start the worker and the dashboard; Ctrl-C stops both")
    p.set_defaults(handler=_run, no_services=True)
    cli_notion.register(sub)
    return parser


def _file_name(value: str) -> str:
    if not value.strip():  # `-o ""` from an unset shell variable must not quietly mean the screen
        raise argparse.ArgumentTypeError("needs a file name; leave -o out to write to standard output")
    return value


def _folder_name(value: str) -> str:
    if not value.strip():  # as for `-o ""`: an unset shell variable must not quietly mean the default folder
        raise argparse.ArgumentTypeError("needs a folder name; leave --output-dir out for DATA_DIR/backups")
    return value


def _text(value: str) -> str:
    # Bytes that are not UTF-8 (a Latin-1 terminal, a pasted binary) reach Python as lone surrogates, which
    # no database stores: refused here, in one line, rather than as the driver's traceback.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError("is not UTF-8 text: retype it in a UTF-8 terminal") from None
    return value


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, 0 or more (got {value!r})")
    return seconds


def _email_address(value: str) -> str:
    """The address as the intake checks and stores it; anything else is a usage error, caught before it is queued."""
    try:
        return parse_signup({"email": value}).email
    except InvalidSignup as exc:
        raise argparse.ArgumentTypeError(f"not a valid email address: {'; '.join(exc.errors.values())}") from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if sys.stdout is None:
        # Started with standard output closed (`>&-`): Python drops every print() and `export` has nothing to
        # write to, so the command would act unseen and end in a traceback; better to do nothing and say so.
        print("nurture: standard output is closed, so nothing was done; redirect it instead (>/dev/null)",
              file=sys.stderr)
        return 1
    configure_logging(level="WARNING")  # commands print their own results; logs only for trouble
    try:
        code = _run_command(args)
        sys.stdout.flush()  # a full disk or a closed pipe shows up here, while it can still be reported
        return code
    except KeyboardInterrupt:  # Ctrl-C: what was committed stays, the rest was rolled back; not a traceback
        print("nurture: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`export | head -1`): stop quietly, as Unix tools do. Standard output
        # now points at /dev/null so that Python's own flush at exit has nothing to complain about.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:  # commands name the files they write; a nameless one is standard output
        print(f"nurture: cannot write {exc.filename or 'standard output'}: {exc.strerror or exc}", file=sys.stderr)
        return 1


def _refuse_missing_database(database_url: str) -> None:
    """A command given in the wrong folder must not act on a new, empty database there and report
    success: `pause` would then stop nothing. Only `db upgrade` (and the worker) create one."""
    missing = db.missing_sqlite_file(database_url)
    if missing is None:
        return
    raise UsageError(
        f"no database at {missing}. DATABASE_URL and .env are read from the folder the command runs in "
        f"({Path.cwd()}): run it from the project folder, or create a new database with `python -m core db upgrade`")


def _run_command(args) -> int:
    try:
        if getattr(args, "no_services", False):
            return args.handler(None, args)
        settings = load_settings()
        if not getattr(args, "creates_database", False):
            _refuse_missing_database(settings.database_url)
        # An empty database is migrated, by any command but `backup`: the backup taken before an
        # upgrade (new code already in place) must copy the database as the old release left it.
        services = build_services(settings, migrate=not getattr(args, "leaves_schema", False))
        try:
            return args.handler(services, args)
        finally:
            services.close()
    except (ConfigError, UsageError) as exc:
        print(f"nurture: {exc}", file=sys.stderr)
        return 2
    except NurtureError as exc:
        print(f"nurture: {exc}", file=sys.stderr)
        return 1
    except sa.exc.SQLAlchemyError as exc:
        # Unreachable (PostgreSQL down, a wrong host) is not a refusal: the server never answered.
        what = "cannot use the database" if db.storage_unavailable(exc) else "the database refused the command"
        print(f"nurture: {what}: {first_line(exc)}", file=sys.stderr)
        return 1

