"""`python -m core notion check [--create-missing]` and `python -m core notion import [--apply]`.

Exit codes follow core.cli: 0 ok, 1 problems remain or Notion failed, 2 Notion is not configured.
"""

import argparse

from core import db
from core.bootstrap import Services
from core.notion import store
from core.notion.errors import NotionNotConfigured
from core.notion.port import NotionMirror
from core.notion.schema import check_schema

# Someone at a terminal can wait out Notion's rate limit (its per-minute window asks for up to 60 s);
# the worker's jobs cannot hold a thread that long and give the rows back instead.
COMMAND_MAX_WAIT = 60.0


def register(subparsers) -> None:
    """Add the `notion` command and its subcommands to core.cli's parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser("notion", help="the Notion mirror: schema check, import")
    sub = parser.add_subparsers(dest="notion_command", required=True, metavar="SUBCOMMAND")
    check = sub.add_parser("check", help="report missing or mistyped columns of the Email Sequence database")
    check.add_argument("--create-missing", action="store_true", help="add the missing columns")
    check.set_defaults(handler=_check)
    imp = sub.add_parser("import", help="enroll the contacts the original system tracked in Notion (dry run)")
    imp.add_argument("--apply", action="store_true", help="write the enrollments (default: only show the plan)")
    imp.set_defaults(handler=_import)


def check(services: Services, mirror: NotionMirror, *, create_missing: bool) -> int:
    """Print the schema report; exit 1 while problems remain."""
    report = check_schema(mirror, create_missing=create_missing)
    for line in report.lines():
        print(line)
    if report.created:
        # A page is written only when its contact's state changes, so without this the pages already
        # there would show the new columns empty for days, or for good once their sequence is over.
        with db.write_transaction(services.engine) as conn:
            queued = store.queue_resync_all(conn, services.clock())
        if queued:
            print(f"{queued} page(s) will be rewritten with the new columns by the worker's Notion sync.")
    return 0 if report.ok else 1


def import_rows(services: Services, mirror: NotionMirror, *, apply: bool) -> int:
    """Print what the import does (or would do) row by row, then a summary."""
    from core.notion.importer import run_import  # with the Notion sync it uses: for `notion import` alone

    plans = run_import(services, mirror, apply=apply)
    for plan in plans:
        print(plan.describe())
    enrolled = sum(1 for p in plans if not p.skip)
    skipped = len(plans) - enrolled
    if apply:
        print(f"Imported {enrolled} contact(s); skipped {skipped}.")
    else:
        print(f"Dry run: {enrolled} to enroll, {skipped} to skip. Nothing was written; run with --apply to import.")
    return 0


def _with_mirror(services: Services, use) -> int:
    if not services.settings.notion_configured:
        raise NotionNotConfigured("NOTION_TOKEN and NOTION_EMAIL_SEQUENCE_DB_ID must be set to use the Notion mirror.")
    from core.notion.client import notion_from_settings  # httpx and notion-client: for `notion` commands alone

    mirror = notion_from_settings(services.settings, max_wait=COMMAND_MAX_WAIT)
    try:
        return use(mirror)
    finally:
        mirror.close()


def _check(services: Services, args) -> int:
    return _with_mirror(services, lambda mirror: check(services, mirror, create_missing=args.create_missing))


def _import(services: Services, args) -> int:
    return _with_mirror(services, lambda mirror: import_rows(services, mirror, apply=args.apply))
