"""`python -m core notion import` and `notion check` against the stand-in holding the original system's database."""

import argparse
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from core import cli_notion, db, erasure
from core.bootstrap import build_services
from core.dispatch import Dispatcher
from core.intake import enroll_now
from core.models import Contact, Send
from core.notion.errors import NotionNotConfigured
from core.notion.client import notion_from_settings
from core.notion.properties import EXPECTED
from core.notion.sync import NotionSync
from core.testing import FakeMailer
from tests.standins.notion_api import NotionStandIn
from tests.support import intake_counts, rows, signup_request

# The columns the original system's "Email Sequence DB" had: no Status, Campaign, dates or Stop.
ORIGINAL = {"Name": "title", "Email": "email", "First Name": "rich_text", "Business Name": "rich_text",
            "Segment": "select", **{f"Email {n} Sent": "checkbox" for n in range(1, 8)}, "Signup Date": "date"}
send_t, contact_t = Send.__table__, Contact.__table__
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"])  # nothing backend-specific is written
NOW = datetime(2025, 12, 1, 9, tzinfo=UTC)


@pytest.fixture
def notion_api():
    with NotionStandIn() as api:
        yield api


@pytest.fixture
def database(notion_api) -> str:
    """The old database with sequences in every state the original system could leave them."""
    db = notion_api.add_database(ORIGINAL)
    ticked = lambda *steps: {f"Email {n} Sent": True for n in steps}  # noqa: E731
    notion_api.add_page(db, {"Name": "Casey", "Email": "casey@example.com", "First Name": "Casey",
                             "Segment": "CRITICAL", "Signup Date": "2025-11-21T09:00:00Z", **ticked(1, 2, 3)})
    notion_api.add_page(db, {"Name": "Uma", "Email": "Uma@Example.com", "Segment": "URGENT",
                             "Signup Date": "2025-12-01T08:00:00Z"})
    notion_api.add_page(db, {"Name": "Otto", "Email": "otto@example.com", "Segment": "OPTIMIZE",
                             "Signup Date": "2025-11-15T09:00:00Z", **ticked(*range(1, 8))})
    notion_api.add_page(db, {"Name": "Nobody"})
    return db


@pytest.fixture
def services(make_settings, clock, notion_api, database):
    clock.now = NOW
    settings = make_settings(notion_token=notion_api.token, notion_email_sequence_db_id=database,
                             notion_api_url=notion_api.url)
    built = build_services(settings, migrate=True, clock=clock, mailer=FakeMailer())
    try:
        yield built
    finally:
        built.close()


def run(services, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli_notion.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["notion", *argv])
    return args.handler(services, args)


def sends(services, email: str) -> dict[int, dict]:
    query = (sa.select(send_t.c.step, send_t.c.status, send_t.c.ready, send_t.c.due_at, send_t.c.provider_id)
             .join(contact_t, contact_t.c.id == send_t.c.contact_id).where(contact_t.c.email == email))
    with services.engine.connect() as conn:
        return {r.step: dict(r._mapping) for r in conn.execute(query)}


@sqlite_only
def test_a_dry_run_prints_the_plan_and_writes_nothing(services, capsys):
    before = intake_counts(services.engine)

    assert run(services, "import") == 0

    out = capsys.readouterr().out
    assert "enroll casey@example.com as CRITICAL: steps 1-3 already sent, step 4 due 2025-12-02 09:00 UTC" in out
    assert "enroll uma@example.com as URGENT: nothing sent yet, step 1 due 2025-12-01 08:00 UTC" in out
    assert "skip   page " in out and "no valid email" in out
    assert "Dry run: 3 to enroll, 1 to skip." in out
    assert intake_counts(services.engine) == before


@sqlite_only  # the wait is the client's; nothing backend-specific
def test_the_import_waits_out_a_rate_limit_longer_than_a_worker_job_would(services, notion_api, capsys):
    # 6 s is past the 5 s a worker job sleeps through; a command at a terminal waits rather than fail.
    notion_api.fail(status=429, code="rate_limited", retry_after=6, path="/v1/data_sources")

    assert run(services, "import", "--apply") == 0

    assert "Imported 3 contact(s); skipped 1." in capsys.readouterr().out
    assert notion_api.stats["faulted"] == 1


def test_half_finished_sequences_are_imported_without_sending_any_step_twice(services, clock, notion_api, database):
    assert run(services, "import", "--apply") == 0
    casey, uma, otto = (sends(services, e) for e in ("casey@example.com", "uma@example.com", "otto@example.com"))

    assert [casey[n]["status"] for n in range(1, 8)] == ["sent"] * 3 + ["scheduled"] * 4
    assert {casey[n]["provider_id"] for n in (1, 2, 3)} == {"imported-from-notion"}
    assert [n for n, s in casey.items() if s["ready"]] == [4]
    assert casey[4]["due_at"] == NOW + timedelta(hours=24)  # half the 48h gap after step 3, never a burst
    assert uma[1]["ready"] and uma[1]["due_at"] == datetime(2025, 12, 1, 8, tzinfo=UTC)
    assert {s["status"] for s in otto.values()} == {"sent"}
    [status] = rows(services.engine, "SELECT e.status FROM enrollment e JOIN contact c ON c.id = e.contact_id "
                                     "WHERE c.email = 'otto@example.com'")
    assert status["status"] == "completed"

    Dispatcher(services, "dispatcher").run_pass()
    clock.advance(hours=24)
    Dispatcher(services, "dispatcher").run_pass()

    sent = [(m.email.to, m.email.tags["step"]) for m in services.mailer.sent]
    # Casey resumes at step 4 and Uma moves on as planned; Otto (finished) and steps 1-3 never go again.
    assert sorted(sent) == [("casey@example.com", "4"), ("uma@example.com", "1"), ("uma@example.com", "2")]


def test_a_rerun_of_the_import_changes_nothing(services, capsys):
    run(services, "import", "--apply")
    after_first = intake_counts(services.engine)
    capsys.readouterr()

    run(services, "import", "--apply")

    assert intake_counts(services.engine) == after_first
    assert "Imported 0 contact(s); skipped 4." in capsys.readouterr().out


@sqlite_only
def test_imported_pages_are_updated_in_place_by_the_mirror(services, notion_api, database):
    run(services, "import", "--apply")
    client = notion_from_settings(services.settings)
    try:
        report = NotionSync(services, client, "worker-a").run_pass()
    finally:
        client.close()

    assert report.updated == 3 and report.created == 0
    assert len(notion_api.pages(database)) == 4
    assert notion_api.stats["created"] == 0


@sqlite_only
def test_columns_the_check_adds_are_filled_in_on_pages_already_written(services, notion_api, database, capsys):
    run(services, "import", "--apply")
    mirror_pass(services)  # written while the database had no Status column
    capsys.readouterr()

    run(services, "check", "--create-missing")
    mirror_pass(services)  # a later pass, once the worker has read the new column list

    assert "3 page(s) will be rewritten" in capsys.readouterr().out
    statuses = {notion_api.values(p["id"])["Email"]: notion_api.values(p["id"])["Status"]
                for p in notion_api.pages(database)}
    assert statuses == {"casey@example.com": "active", "uma@example.com": "active",
                        "otto@example.com": "completed", None: None}


def mirror_pass(services):
    client = notion_from_settings(services.settings)
    try:
        return NotionSync(services, client, "worker-a").run_pass()
    finally:
        client.close()


def test_a_row_stopped_in_notion_is_imported_as_cancelled(services, notion_api, database):
    notion_api.add_page(database, {"Email": "stopped@example.com"})
    run(services, "check", "--create-missing")
    [page] = [p for p in notion_api.pages(database) if notion_api.values(p["id"])["Email"] == "stopped@example.com"]
    notion_api.set_value(page["id"], "Stop", True)

    run(services, "import", "--apply")

    assert {s["status"] for s in sends(services, "stopped@example.com").values()} == {"cancelled"}
    [event] = rows(services.engine, "SELECT actor FROM event WHERE kind = 'sequence_cancelled'")
    assert event["actor"] == "notion"


@sqlite_only
def test_the_check_lists_every_problem_and_create_missing_fixes_what_it_can(services, notion_api, database, capsys):
    assert run(services, "check") == 1
    listed = capsys.readouterr().out

    assert run(services, "check", "--create-missing") == 0
    fixed = capsys.readouterr().out

    assert "The Email Sequence database has 5 problem(s):" in listed
    assert "  - missing   Stop (checkbox)" in listed and "  - missing   Status (select)" in listed
    assert "added     Stop" in fixed and fixed.rstrip().endswith("every column the mirror needs.")
    assert EXPECTED.items() <= notion_api.schema(database).items()


@sqlite_only
def test_the_notion_commands_refuse_to_run_without_notion_configured(make_settings):
    services = build_services(make_settings(), migrate=True)
    try:
        with pytest.raises(NotionNotConfigured, match="NOTION_TOKEN"):
            run(services, "check")
    finally:
        services.close()


def test_names_the_webhook_would_refuse_are_cleaned_on_import_not_allowed_to_fail_it(services, notion_api, database):
    # The old database never validated its text: a pasted paragraph, a line break in a name.
    notion_api.add_page(database, {"Email": "long@example.com", "First Name": "Ann\nBcc: x@example.com",
                                   "Business Name": "B" * 250, "Segment": "URGENT"})

    assert run(services, "import", "--apply") == 0

    [contact] = rows(services.engine, "SELECT first_name, business_name FROM contact WHERE email = 'long@example.com'")
    assert contact["first_name"] == "Ann Bcc: x@example.com"  # no line break can reach a subject header
    assert contact["business_name"] == "B" * 200
    assert len(sends(services, "long@example.com")) == 7


def test_a_row_of_someone_who_asked_to_be_forgotten_is_never_imported(services, clock, capsys):
    enroll_now(services, [signup_request(email="uma@example.com")])
    with db.write_transaction(services.engine) as conn:
        erasure.forget(conn, "uma@example.com", actor="cli", now=services.clock())
    before = intake_counts(services.engine)

    assert run(services, "import", "--apply") == 0

    assert "skip   uma@example.com: erased: this person asked to be forgotten" in capsys.readouterr().out
    assert sends(services, "uma@example.com") == {}
    clock.advance(hours=25)  # Casey's step 4 falls due, so the pass sends something: to Casey, never to Uma
    Dispatcher(services, "dispatcher").run_pass()
    assert [m.email.to for m in services.mailer.sent] == ["casey@example.com"]
    assert intake_counts(services.engine)["contact"] == before["contact"] + 2  # casey and otto only
