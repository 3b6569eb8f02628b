"""`uvicorn core.api:app` (the README's scale-out command) with a bad setting or an unreachable database:
one sentence and an exit, as the worker gives, not a traceback, nor (with --workers) a supervisor
restarting the failing worker processes for ever."""

import subprocess
import sys

import pytest

from tests.e2e.processes import free_port
from tests.e2e.test_api_workers import api_env

pytestmark = pytest.mark.e2e
UVICORN_STARTUP_FAILURE = 3  # uvicorn's own exit code for an app that cannot start


def uvicorn(tmp_path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "uvicorn", *args, "--host", "127.0.0.1", "--port", str(free_port())],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("app", [["core.api:app"], ["core.api:create_app", "--factory"]], ids=["app", "factory"])
def test_the_api_under_uvicorn_stops_at_once_with_one_sentence_naming_a_bad_setting(database_url, tmp_path, app):
    env = {**api_env(database_url, tmp_path), "TESTING_MODE": "maybe"}

    done = uvicorn(tmp_path, env, *app)

    assert done.returncode == UVICORN_STARTUP_FAILURE, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "nurture: TESTING_MODE is invalid" in done.stderr


@pytest.mark.parametrize("backend", ["sqlite"])
def test_several_uvicorn_workers_that_cannot_start_end_the_supervisor_instead_of_being_restarted(
        database_url, tmp_path):
    env = {**api_env(database_url, tmp_path), "DATABASE_URL": "postgresql+psycopg://nurture@127.0.0.1:1/nurture"}

    done = uvicorn(tmp_path, env, "core.api:app", "--workers", "2")  # the timeout fails a supervisor that never stops

    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "nurture: the API cannot use the database" in done.stderr
    assert "died" not in done.stderr  # uvicorn's word for a worker it is about to start again
