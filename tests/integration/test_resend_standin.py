"""The Resend stand-in is a tool other tests and benchmarks rely on, so it is tested itself."""

import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.standins.resend_api import ResendStandIn

KEY = "re_standin_key"
AUTH = {"Authorization": f"Bearer {KEY}"}
ONE = {"from": "a@example.com", "to": "b@example.org", "subject": "Hi", "text": "Hello"}
SCRIPT = Path(__file__).parents[1] / "standins" / "resend_api.py"


@pytest.fixture
def api():
    # A frozen clock keeps every call in one rate-limit window.
    with ResendStandIn(api_key=KEY, rate_limit=2, clock=lambda: 100.5) as server:
        yield server


def test_a_missing_key_gets_401_in_resends_error_shape(api):
    answer = requests.post(f"{api.url}/emails", json=ONE, timeout=5)
    assert answer.status_code == 401
    assert answer.json() == {
        "statusCode": 401, "name": "missing_api_key", "message": "Missing API key in the authorization header.",
    }


def test_every_answer_carries_ratelimit_headers_and_the_limit_answers_429_with_retry_after(api):
    first = requests.post(f"{api.url}/emails", json=ONE, headers=AUTH, timeout=5)
    second = requests.post(f"{api.url}/emails", json=ONE, headers=AUTH, timeout=5)
    third = requests.post(f"{api.url}/emails", json=ONE, headers=AUTH, timeout=5)

    assert [first.headers["ratelimit-remaining"], second.headers["ratelimit-remaining"]] == ["1", "0"]
    assert first.headers["ratelimit-limit"] == "2" and first.headers["ratelimit-reset"] == "1"
    assert third.status_code == 429 and third.headers["retry-after"] == "1"
    assert third.json()["name"] == "rate_limit_exceeded"
    assert len(api.sent) == 2 and api.stats["rate_limited"] == 1


def test_a_strict_batch_with_one_invalid_address_sends_nothing(api):
    batch = [ONE, {**ONE, "to": "broken"}]
    answer = requests.post(f"{api.url}/emails/batch", json=batch, headers=AUTH, timeout=5)
    assert answer.status_code == 422 and answer.json()["message"].startswith("emails[1]: Invalid `to` field")
    assert api.sent == []


def test_a_permissive_batch_lists_errors_by_index_and_ids_for_the_rest(api):
    batch = [{**ONE, "to": "broken"}, ONE]
    headers = {**AUTH, "x-batch-validation": "permissive"}
    body = requests.post(f"{api.url}/emails/batch", json=batch, headers=headers, timeout=5).json()
    assert [e["index"] for e in body["errors"]] == [0]
    assert [d["id"] for d in body["data"]] == [api.sent[0].id]


def test_tags_outside_resends_alphabet_are_refused(api):
    tagged = {**ONE, "tags": [{"name": "campaign", "value": "Christmas 2025"}]}
    answer = requests.post(f"{api.url}/emails", json=tagged, headers=AUTH, timeout=5)
    assert answer.status_code == 422 and "Tags" in answer.json()["message"]


def test_scripted_faults_answer_in_order_then_normal_service_resumes():
    with ResendStandIn(api_key=KEY, rate_limit=0) as api:
        api.fail(500, times=2)
        api.fail(429, retry_after=1)
        statuses = [requests.post(f"{api.url}/emails", json=ONE, headers=AUTH, timeout=5) for _ in range(4)]
        assert [s.status_code for s in statuses] == [500, 500, 429, 200]
        assert statuses[2].headers["retry-after"] == "1"
        assert "ratelimit-limit" not in statuses[3].headers  # rate_limit=0 turns the limit off
        assert api.stats == {"requests": 4, "accepted": 1, "rate_limited": 0, "replayed": 0, "faulted": 3}


def test_the_script_serves_the_api_and_its_control_endpoints_to_other_processes():
    command = [sys.executable, str(SCRIPT), "--port", "0", "--rate-limit", "50", "--api-key", KEY]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            url = process.stdout.readline().split()[-1]
            assert url.startswith("http://127.0.0.1:")
            requests.post(f"{url}/_faults", json={"status": 503, "times": 1}, timeout=5).raise_for_status()
            failed = requests.post(f"{url}/emails", json=ONE, headers=AUTH, timeout=5)
            sent = requests.post(f"{url}/emails", json=ONE, headers={**AUTH, "Idempotency-Key": "k"}, timeout=5)
            record = requests.get(f"{url}/_sent", timeout=5).json()
            stats = requests.get(f"{url}/_stats", timeout=5).json()
            requests.post(f"{url}/_reset", timeout=5).raise_for_status()
            after_reset = requests.get(f"{url}/_sent", timeout=5).json()
        finally:
            process.terminate()
    assert failed.status_code == 503 and sent.status_code == 200
    assert [(r["id"], r["to"], r["idempotency_key"]) for r in record] == [(sent.json()["id"], ["b@example.org"], "k")]
    assert stats["faulted"] == 1 and stats["accepted"] == 1
    assert after_reset == []
    assert process.returncode == 0
