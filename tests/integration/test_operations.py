"""Operations: migrations, erasure, CSV import, backup, metrics, singleton leases, production refusal."""

import json
import threading
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import SQLModel

from core import backup, csv_import, db, erasure, queries, singleton, switches
from core.bootstrap import build_services
from core.csv_export import write_contacts
from core.dispatch import Dispatcher
from core.enrollments import SignupRequest
from core.errors import ConfigError, NotFound
from core.intake import enroll_now
from core.settings import load_settings
from core.signups import parse_signup
from core.statuses import SignupOutcome


def _enroll(services, email, **fields):
    return enroll_now(services, [SignupRequest(parse_signup({"email": email, **fields}))])[0]


def test_the_migrated_schema_matches_the_models_exactly(services):
    # Server defaults too: autogenerate leaves them out unless asked, and an old row's value hangs on them.
    with services.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        assert compare_metadata(context, SQLModel.metadata) == []
        assert _index_predicates(conn) == _declared_index_predicates(conn.dialect.name)


def _predicate(text) -> str:
    """A partial index's condition as written, whatever parentheses and case the database reads back."""
    return " ".join(str(text).replace("(", " ").replace(")", " ").split()).lower()


def _declared_index_predicates(dialect: str) -> dict[str, str | None]:
    return {index.name: _predicate(where) if (where := index.dialect_options[dialect].get("where")) is not None
            else None for table in SQLModel.metadata.tables.values() for index in table.indexes}


def _index_predicates(conn: sa.Connection) -> dict[str, str | None]:
    """Each declared index's condition as the database has it (autogenerate does not compare them)."""
    inspector, key = sa.inspect(conn), f"{conn.dialect.name}_where"
    declared = {index.name for table in SQLModel.metadata.tables.values() for index in table.indexes}
    found = {}
    for table in SQLModel.metadata.tables:
        for index in inspector.get_indexes(table):
            where = index.get("dialect_options", {}).get(key)
            if index["name"] in declared:
                found[index["name"]] = None if where is None else _predicate(where)
    return found


def test_upgrading_twice_changes_nothing(services):
    db.upgrade(services.engine)
    assert db.current_revision(services.engine) is not None


def test_a_forgotten_person_is_erased_and_refused_when_they_sign_up_again(services):
    first = _enroll(services, "gone@example.com", first_name="Greta", business_name="Gone Ltd", red_systems=2)
    with db.write_transaction(services.engine) as conn:
        erasure.forget(conn, "Gone@Example.com", actor="cli", now=services.clock())
    with db.read_transaction(services.engine) as conn:
        contact = conn.execute(sa.text("SELECT email, first_name, business_name, suppressed_reason FROM contact")).one()
        payloads = conn.execute(sa.text("SELECT payload FROM signup")).scalars().all()
        pending = conn.execute(sa.text("SELECT count(*) FROM send WHERE status = 'scheduled'")).scalar()
        status = conn.execute(sa.text("SELECT status FROM enrollment")).scalar()
        [erased] = conn.execute(sa.text("SELECT detail FROM event WHERE kind = 'contact_erased'")).scalars()
        stats = queries.stats(conn)
    assert "gone" not in contact.email and contact.first_name is None and contact.business_name is None
    assert contact.suppressed_reason == "erased"
    assert payloads == ["{}"]
    assert pending == 0
    assert status == json.loads(erased)["status"] == "cancelled"  # erased, not "bounced"
    assert stats["suppressed"] == 1 and stats["unsubscribed"] == 0

    # The intake takes the salt from its one settings read; it is the salt the erasure used.
    with db.read_transaction(services.engine) as conn:
        assert switches.read(conn).erasure_salt == erasure.erasure_salt(conn, services.clock())
    again = _enroll(services, "gone@example.com", red_systems=2)
    assert again.outcome is SignupOutcome.REFUSED and again.duplicate
    with db.read_transaction(services.engine) as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM contact")).scalar() == 1
        refusals = conn.execute(sa.text("SELECT detail FROM event WHERE kind = 'signup_refused_erased'")).scalars().all()
    assert len(refusals) == 1 and "gone@example.com" not in refusals[0]
    assert first.contact_id


def test_forgetting_an_unknown_address_says_so(services):
    with db.write_transaction(services.engine) as conn, pytest.raises(NotFound):
        erasure.forget(conn, "nobody@example.com", actor="cli", now=services.clock())


def test_a_csv_import_reports_rejects_by_line_and_a_rerun_changes_nothing(services, tmp_path):
    path = tmp_path / "list.csv"
    path.write_text("email,first_name,red_systems\n"
                    "ann@example.com,Ann,2\n"
                    "not-an-email,Bob,1\n"
                    "cat@example.com,Cat,77\n"
                    "dan@example.com,Dan,0\n"
                    "ANN@example.com,Ann again,1\n", encoding="utf-8")
    plan = csv_import.plan_import(services, path.read_text(encoding="utf-8").splitlines(keepends=True))
    assert [line for line, _ in plan.rejects] == [3, 4, 6]
    assert "email" in plan.rejects[0][1] and "red_systems" in plan.rejects[1][1]
    assert [s.email for _, s in plan.new] == ["ann@example.com", "dan@example.com"]
    assert csv_import.apply_import(services, plan) == 2

    rerun = csv_import.plan_import(services, path.read_text(encoding="utf-8").splitlines(keepends=True))
    assert rerun.new == [] and [email for _, email in rerun.known] == ["ann@example.com", "dan@example.com"]
    with db.read_transaction(services.engine) as conn:
        before = conn.execute(sa.text("SELECT count(*) FROM signup")).scalar()
    assert csv_import.apply_import(services, rerun) == 0
    with db.read_transaction(services.engine) as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM signup")).scalar() == before
        assert queries.stats(conn)["enrollments"] == 2



def test_a_lead_who_signs_up_between_an_import_plan_and_its_apply_is_left_alone(services):
    plan = csv_import.plan_import(services, ["email,first_name,red_systems\n", "lead@example.com,Old list,0\n"])
    fresh = _enroll(services, "lead@example.com", first_name="Lee", red_systems=2)  # the website, meanwhile

    assert csv_import.apply_import(services, plan) == 0

    with db.read_transaction(services.engine) as conn:
        stored = conn.execute(sa.text("SELECT c.first_name, e.segment FROM contact c "
                                      "JOIN enrollment e ON e.contact_id = c.id")).one()
        imported = conn.execute(sa.text("SELECT outcome FROM signup WHERE source = 'import'")).scalars().all()
    assert (stored.first_name, stored.segment) == ("Lee", fresh.segment) == ("Lee", "CRITICAL")
    assert imported == ["skipped"]


def test_an_export_imported_into_a_new_database_keeps_every_leads_segment(services, make_settings, tmp_path):
    for email, red, orange in (("crit@example.com", 3, 0), ("urg@example.com", 1, 0), ("urg2@example.com", 0, 2),
                               ("opt@example.com", 0, 1)):
        _enroll(services, email, red_systems=red, orange_systems=orange)
    _enroll(services, "blank@example.com")  # no counts given: OPTIMIZE, and the export's cells are empty
    exported = tmp_path / "contacts.csv"
    with db.read_transaction(services.engine) as conn, open(exported, "w", encoding="utf-8", newline="") as out:
        write_contacts(out, queries.export_rows(conn))
    other = build_services(make_settings(database_url=f"sqlite:///{tmp_path}/other.db"), migrate=True)
    try:
        with open(exported, encoding="utf-8-sig", newline="") as lines:
            plan = csv_import.plan_import(other, lines)
        assert plan.rejects == [] and csv_import.apply_import(other, plan) == 5
        with db.read_transaction(services.engine) as before, db.read_transaction(other.engine) as after:
            assert queries.stats(after)["segments"] == queries.stats(before)["segments"] == {
                "CRITICAL": 1, "URGENT": 2, "OPTIMIZE": 2}
    finally:
        other.close()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_csv_row_with_more_cells_than_the_header_is_rejected_rather_than_stored_shifted(services):
    # An unquoted comma in a name shifts the row: "Smith" would be the business and "Jones" the first name.
    lines = ["email,business_name,first_name\n", "ann@example.com,Smith, Jones,Ann\n",
             "bob@example.com,Bob Ltd,Bob,,\n"]

    plan = csv_import.plan_import(services, lines)

    assert [s.email for _, s in plan.new] == ["bob@example.com"]  # empty trailing cells are only padding
    [(line, reason)] = plan.rejects
    assert line == 2 and "more cells than the header" in reason


def test_a_csv_row_whose_segment_its_counts_do_not_give_is_rejected(services):
    lines = ["email,segment,red_systems\n", "crit@example.com,CRITICAL,2\n", "lost@example.com,CRITICAL,\n",
             "low@example.com,optimize,0\n"]

    plan = csv_import.plan_import(services, lines)

    assert [s.email for _, s in plan.new] == ["crit@example.com", "low@example.com"]
    [(line, reason)] = plan.rejects
    assert line == 3 and reason.startswith("segment: CRITICAL does not follow from red_systems and orange_systems, "
                                           "which give OPTIMIZE")


def test_a_csv_segment_that_is_no_segment_is_rejected_without_echoing_the_cell(services):
    lines = ["email,segment\n", "odd@example.com,\x1b]0;pwned\x07HOT\n"]

    [(line, reason)] = csv_import.plan_import(services, lines).rejects

    assert line == 2 and reason.startswith("segment: must be CRITICAL, URGENT or OPTIMIZE (the counts give OPTIMIZE)")
    assert "\x1b" not in reason and "pwned" not in reason


def test_a_csv_import_plan_of_more_rows_than_one_statement_takes_parameters_for(services):
    """PostgreSQL takes at most 65,535 bound parameters per statement: the lookups go in chunks."""
    _enroll(services, "known-65600@example.com")
    lines = ["email\n", *(f"row-{n}@example.com\n" for n in range(70_000)), "known-65600@example.com\n"]
    plan = csv_import.plan_import(services, lines)
    assert (len(plan.new), [email for _, email in plan.known], plan.rejects) == (70_000, ["known-65600@example.com"], [])


def test_a_csv_import_plan_refuses_erased_addresses_before_anything_is_written(services):
    _enroll(services, "gone@example.com")
    with db.write_transaction(services.engine) as conn:
        erasure.forget(conn, "gone@example.com", actor="cli", now=services.clock())
    lines = ["email\n", "Gone@Example.com\n", "new@example.com\n"]

    plan = csv_import.plan_import(services, lines)

    assert plan.erased == [(2, "gone@example.com")]
    assert [s.email for _, s in plan.new] == ["new@example.com"] and not plan.all_refused
    assert csv_import.apply_import(services, plan) == 1
    assert csv_import.plan_import(services, lines[:2]).all_refused


def test_metrics_parse_with_the_prometheus_parser_and_count_what_happened(services, client):
    for i in range(3):
        client.post("/webhook/christmas-signup", json={"email": f"m{i}@example.com", "red_systems": 2})
    Dispatcher(services, "w1").run_pass()
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    enrollments = {s.labels["segment"]: s.value for s in families["nurture_enrollments"].samples}
    sends = {s.labels["status"]: s.value for s in families["nurture_sends"].samples}
    assert enrollments == {"CRITICAL": 3.0}
    assert sends["sent"] == 3.0 and sends["scheduled"] == 18.0
    assert "nurture_dispatch_lateness_seconds" in families
    assert "nurture_provider_call_seconds" in families
    assert families["nurture_queue_depth"].samples[0].value == 0.0


def test_only_one_worker_holds_a_singleton_lease_under_contention(services):
    winners, barrier = [], threading.Barrier(8)

    def contend(owner):
        barrier.wait()
        with db.write_transaction(services.engine) as conn:
            if singleton.try_acquire(conn, "notion_sync", owner, services.clock(), timedelta(seconds=60)):
                winners.append(owner)

    threads = [threading.Thread(target=contend, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1


def test_a_singleton_lease_passes_on_only_after_it_expires(services, clock):
    ttl = timedelta(seconds=60)
    with db.write_transaction(services.engine) as conn:
        assert singleton.try_acquire(conn, "alerts", "w1", clock(), ttl)
        assert not singleton.try_acquire(conn, "alerts", "w2", clock(), ttl)
        assert singleton.try_acquire(conn, "alerts", "w1", clock(), ttl)  # the holder renews
    clock.advance(seconds=61)
    with db.write_transaction(services.engine) as conn:
        assert singleton.try_acquire(conn, "alerts", "w2", clock(), ttl)
        assert not singleton.try_acquire(conn, "alerts", "w1", clock(), ttl)


def test_a_public_deployment_refuses_to_start_without_its_safeguards(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as refused:
        load_settings(_env_file=None, public_base_url="https://nurture.acme.co.uk", secret_key="changethis")
    message = str(refused.value)
    for missing in ("SECRET_KEY", "WEBHOOK_SECRET", "dashboard authentication", "RESEND_FROM_EMAIL"):
        assert missing in message
    assert "changethis" not in message and message.count("\n") == 0


def test_a_public_deployment_with_every_safeguard_starts(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(_env_file=None, public_base_url="https://nurture.acme.co.uk",
                             secret_key="k" * 32, webhook_secret="w" * 24, dashboard_password="a long passphrase",
                             resend_from_email="Acme <hello@acme.co.uk>", booking_url="https://acme.co.uk/book",
                             postal_address="Acme Ltd, 2 High Street, York YO1 7HH")
    assert settings.is_production


def test_a_local_deployment_needs_none_of_the_production_safeguards(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert not load_settings(_env_file=None).is_production


def test_a_sqlite_backup_is_a_readable_copy(services, tmp_path, backend):
    if backend != "sqlite":
        command = backup.pg_dump_command(services.settings.database_url, services.clock())
        assert command.startswith("pg_dump ") and "--format=custom" in command
        return
    _enroll(services, "kept@example.com")
    target = backup.backup_sqlite(services.settings.database_url, tmp_path / "backups", services.clock())
    copy = sa.create_engine(f"sqlite:///{target}")
    with copy.connect() as conn:
        assert conn.execute(sa.text("SELECT email FROM contact")).scalars().all() == ["kept@example.com"]
    copy.dispose()
    assert Path(target).stat().st_size > 0


def test_a_pause_reason_holding_a_nul_pauses_and_keeps_the_reason_without_it(services, clock):
    # Typed or pasted into the dashboard's reason box; PostgreSQL refuses NUL in any text it is sent.
    with db.write_transaction(services.engine) as conn:
        assert switches.pause_unless_paused(conn, "checking\x00 step 3", actor="dashboard", now=clock()) is None
    with db.read_transaction(services.engine) as conn:
        state = switches.read(conn)
    assert state.paused and state.pause_reason == "checking step 3"
    with db.read_transaction(services.engine) as conn:
        detail = conn.scalar(sa.text("SELECT detail FROM event WHERE kind = 'sending_paused'"))
    assert json.loads(detail) == {"reason": "checking step 3"}


def test_a_resume_lifts_only_the_pause_it_saw_and_a_pause_keeps_the_one_in_place(services, clock):
    def write(command, *args):
        with db.write_transaction(services.engine) as conn:
            return command(conn, *args, actor="dashboard", now=clock())

    def state():
        with db.read_transaction(services.engine) as conn:
            return switches.read(conn)

    assert write(switches.pause_unless_paused, "checking copy") is None
    with db.read_transaction(services.engine) as conn:
        first = switches.paused_since(conn)
    assert first == clock()
    assert "already paused (checking copy)" in write(switches.pause_unless_paused, "another reason")

    write(switches.resume_seen, first)
    clock.advance(minutes=5)
    write(switches.pause_unless_paused, "checking copy")  # paused again, for the same reason
    assert "paused again" in write(switches.resume_seen, first), "told apart by time, not by reason"
    assert (state().paused, state().pause_reason) == (True, "checking copy")

    with db.read_transaction(services.engine) as conn:
        second = switches.paused_since(conn)
    assert write(switches.resume_seen, second) is None
    assert not state().paused
    assert write(switches.resume_seen, second) == "Sending was already resumed."
