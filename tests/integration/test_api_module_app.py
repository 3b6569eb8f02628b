"""`uvicorn core.api:app`, as DESIGN §2 names it: the module's `app` is built on first access, not at import."""

import pytest
from fastapi import FastAPI

import core.api
from tests.support import TestClient


@pytest.fixture
def fresh_module_app():
    core.api._served.clear()
    yield
    app = core.api._served.pop("app", None)
    if app is not None:
        app.state.services.close()


def test_core_api_app_is_the_intake_api_built_from_the_environment_on_a_new_database(
        make_settings, database_url, tmp_path, monkeypatch, fresh_module_app):
    make_settings()  # clears every variable Settings reads
    monkeypatch.chdir(tmp_path)  # no developer .env
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    assert "app" not in vars(core.api)  # importing the package built nothing

    app = core.api.app

    assert isinstance(app, FastAPI) and core.api.app is app
    with TestClient(app) as client:
        assert client.get("/health").json()["status"] == "healthy"
        answer = client.post("/webhook/christmas-signup", json={"email": "uv@example.com", "red_systems": 2})
    assert answer.status_code == 202 and answer.json()["segment"] == "CRITICAL"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_new_database_met_first_by_the_api_is_seeded_from_testing_mode(make_settings, database_url, tmp_path,
                                                                          monkeypatch, fresh_module_app):
    make_settings()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TESTING_MODE", "true")

    with TestClient(core.api.app) as client:
        health = client.get("/health").json()
    assert health["database"] == "ok" and health["testing_mode"] is True  # the stored setting, seeded


def test_other_missing_names_of_core_api_are_still_attribute_errors():
    with pytest.raises(AttributeError):
        core.api.no_such_thing  # noqa: B018
