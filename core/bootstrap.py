"""The one wiring point: every entrypoint and the tests build their services here."""

import logging
import os
import secrets
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core import db, output_files, switches
from core.composer import Composer
from core.db_outages import WriteFailures
from core.clock import Clock, system_clock
from core.errors import ConfigError
from core.metrics import Metrics
from core.mailers import DryRunMailer, Mailer
from core.settings import Settings, load_settings

log = logging.getLogger(__name__)
MIN_KEY_LENGTH = 16  # as production_problems asks of SECRET_KEY
# A data folder Nurture creates holds the database, the secret key and backups: its owner's alone.
PRIVATE_FOLDER = 0o700


@dataclass
class Services:
    settings: Settings
    engine: Engine
    mailer: Mailer
    secret_key: str = field(repr=False)
    composer: Composer
    metrics: Metrics = field(default_factory=Metrics)
    clock: Clock = system_clock
    # Set by intake when a new enrollment commits, so a co-hosted dispatcher sends at once.
    wake: threading.Event = field(default_factory=threading.Event)
    # Set when the worker is asked to stop (SIGTERM, Ctrl-C): dispatch finishes the batch in hand and
    # claims no more, so a stop takes one provider call, not the whole backlog (systemd's TimeoutStopSec).
    stopping: threading.Event = field(default_factory=threading.Event)
    # What in this process could not write to the database lately (the intake, a worker job): /health.
    write_failures: WriteFailures = field(default_factory=WriteFailures)

    def close(self) -> None:
        self.engine.dispose()


def build_services(
    settings: Settings | None = None, *, mailer: Mailer | None = None, clock: Clock | None = None,
    migrate: bool = False, pool_size: int = 5,
) -> Services:
    """Build the engine and adapters from settings; optionally migrate and seed runtime switches."""
    settings = settings or load_settings()
    secret_key = resolve_secret_key(settings)  # first: DATA_DIR problems are then reported as such
    engine = db.create_db_engine(settings.database_url, pool_size=pool_size)
    clock = clock or system_clock
    if migrate:
        try:
            prepare_database(engine, settings, clock)
        except sa.exc.OperationalError as exc:
            if not db.cannot_open(exc):
                raise
            # SQLite says only "unable to open database file": name the setting and the file, and the likely cause.
            path = db.sqlite_path(settings.database_url)
            why = ("it is a folder" if path.is_dir() else "this user may not create it there, or not read it "
                   "(check the permissions of the file and its folder)")
            raise ConfigError(f"DATABASE_URL names the SQLite file {path}, which cannot be opened: {why}.") from None
    composer = Composer(public_base_url=settings.public_base_url, secret_key=secret_key,
                        postal_address=settings.postal_address, booking_url=settings.booking_url)
    services = Services(
        settings=settings,
        engine=engine,
        mailer=mailer or build_mailer(settings),
        secret_key=secret_key,
        composer=composer,
        clock=clock,
    )
    services.metrics.watch_database(engine, clock)
    return services


def prepare_database(engine: Engine, settings: Settings, clock: Clock) -> None:
    """Migrate and seed the runtime switches; a database that needs neither is only read."""
    db.upgrade(engine)
    with db.read_transaction(engine) as conn:
        if switches.is_seeded(conn):
            return
    with db.write_transaction(engine) as conn:
        switches.seed(conn, test_mode=settings.testing_mode, now=clock())


def build_mailer(settings: Settings) -> Mailer:
    if settings.dry_run:
        return DryRunMailer()
    from core.resend_mailer import ResendMailer  # only import the SDK when it will be used

    return ResendMailer(settings.resend_api_key, settings.resend_from_email, rate_limit=settings.resend_rate_limit,
                        api_url=settings.resend_api_url)


def resolve_secret_key(settings: Settings) -> str:
    """SECRET_KEY, or for local use a key generated once into the data folder."""
    if settings.secret_key:
        return settings.secret_key
    folder = Path(settings.data_dir)
    path = folder / output_files.SECRET_KEY_FILE
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"DATA_DIR {folder} is a file, not a folder.")
    if reason := output_files.broken_link(folder):  # mkdir would say only "File exists"
        raise ConfigError(f"DATA_DIR {folder} cannot be used: {reason}.")
    try:
        if not path.exists():
            _write_new_key(path)
        key = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"DATA_DIR {folder} cannot hold the secret key {path}: {exc.strerror or exc}.") from None
    except UnicodeDecodeError:
        key = ""
    if len(key) < MIN_KEY_LENGTH:
        # Refused, not regenerated: the worker, the API and the dashboard each read this file, so one
        # replacing it while another starts could leave them signing with different keys; and since
        # the key is written atomically, an empty file means someone changed it, who should look.
        raise ConfigError(f"The secret key file {path} in DATA_DIR is empty or shorter than {MIN_KEY_LENGTH} "
                          f"characters, so unsubscribe links could be forged: delete it to have a new key "
                          f"generated, or set SECRET_KEY.")
    return key


def _write_new_key(path: Path) -> None:
    path.parent.mkdir(mode=PRIVATE_FOLDER, parents=True, exist_ok=True)
    # Written whole and synced to a private file, then linked into place: a process starting at the
    # same moment, or a crash, leaves either no key yet or the complete one, never an empty file;
    # the first link wins.
    fd, scratch = tempfile.mkstemp(dir=path.parent, prefix=".secret_key.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(secrets.token_urlsafe(32))
            fh.flush()
            os.fsync(fh.fileno())
        os.link(scratch, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(scratch)
