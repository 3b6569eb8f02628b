"""/health and /metrics during a database outage: 503 and database_up 0, and one log line, not a traceback per probe."""

import logging

from core.api import create_app
from core.bootstrap import build_services
from core.settings import Settings
from tests.support import TestClient

# Nothing listens on this port: every connection is refused, as when PostgreSQL is down.
UNREACHABLE = "postgresql+psycopg://nurture@127.0.0.1:9/nurture"


def test_an_outage_probed_again_and_again_is_logged_once_without_a_traceback(caplog, monkeypatch):
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    services = build_services(Settings(_env_file=None, database_url=UNREACHABLE, secret_key="k" * 40))
    try:
        with TestClient(create_app(services)) as client, caplog.at_level(logging.INFO):
            health = [client.get("/health") for _ in range(3)]
            scrapes = [client.get("/metrics").text for _ in range(3)]
    finally:
        services.close()

    assert [r.status_code for r in health] == [503] * 3 and health[0].json()["database"] == "unreachable"
    assert all("nurture_database_up 0.0" in text for text in scrapes)
    shown = [(r.name, r.levelname, r.getMessage().partition(":")[0]) for r in caplog.records
             if r.name in ("core.api.health", "core.metrics", "core.db_outages") and r.levelno >= logging.INFO]
    assert shown == [("core.db_outages", "WARNING", "health"), ("core.db_outages", "WARNING", "metrics")]
    assert not any(r.exc_info for r in caplog.records if r.levelno >= logging.INFO)
