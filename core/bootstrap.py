"""The one wiring point: every entrypoint and the tests build their services here."""

import logging
import os
import secrets
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Engine

from core import db, switches
from core.composer import Composer
from core.clock import Clock, system_clock
from core.metrics import Metrics
from core.mailers import DryRunMailer, Mailer
from core.settings import Settings, load_settings

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    engine: Engine
    mailer: Mailer
    secret_key: str
    composer: Composer
    metrics: Metrics = field(default_factory=Metrics)
    clock: Clock = system_clock
    # Set by intake when a new enrollment commits, so a co-hosted dispatcher sends at once.
    wake: threading.Event = field(default_factory=threading.Event)

    def close(self) -> None:
        self.engine.dispose()


def build_services(
    settings: Settings | None = None, *, mailer: Mailer | None = None, clock: Clock | None = None,
    migrate: bool = False, pool_size: int = 5,
) -> Services:
    """Build the engine and adapters from settings; optionally migrate and seed runtime switches."""
    settings = settings or load_settings()
    engine = db.create_db_engine(settings.database_url, pool_size=pool_size)
    clock = clock or system_clock
    if migrate:
        db.upgrade(engine)
        with db.write_transaction(engine) as conn:
            switches.seed(conn, test_mode=settings.testing_mode, now=clock())
    secret_key = resolve_secret_key(settings)
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


def build_mailer(settings: Settings) -> Mailer:
    if settings.dry_run:
        return DryRunMailer()
    from core.resend_mailer import ResendMailer  # only import the SDK when it will be used

    return ResendMailer(settings.resend_api_key, settings.resend_from_email, rate_limit=settings.resend_rate_limit)


def resolve_secret_key(settings: Settings) -> str:
    """SECRET_KEY, or for local use a key generated once into the data folder."""
    if settings.secret_key:
        return settings.secret_key
    path = Path(settings.data_dir) / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole to a private file, then linked into place: a process starting at the same
        # moment either sees no key yet or the complete one, never an empty file; the first link wins.
        fd, scratch = tempfile.mkstemp(dir=path.parent, prefix=".secret_key.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(secrets.token_urlsafe(32))
            os.link(scratch, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(scratch)
    return path.read_text(encoding="utf-8").strip()
