"""The webhook's public contract over HTTP, on both backends: 202 only once stored, 4xx and nothing stored otherwise."""

import asyncio
import json
import logging
import threading
import time

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from core import db, switches
from core.api import create_app
from core.api.intake import body_signature
from core.bootstrap import build_services
from core.models import Contact
from tests.support import SEED_SIGNUPS, TestClient, intake_counts, signup, signup_request

URL = "/webhook/christmas-signup"
contact_t = Contact.__table__
ACCEPTED_KEYS = {"status", "message", "email", "campaign", "segment", "duplicate"}
NOTHING = {"contact": 0, "signup": 0, "enrollment": 0, "send": 0}


def contract_part(body: dict) -> dict:
    """The keys DESIGN §5 fixes (that nothing else is there is checked on its own)."""
    return {k: v for k, v in body.items() if k in ACCEPTED_KEYS}


def _json(value) -> bytes:
    return json.dumps(value).encode()


def _nested(depth: int):
    value: object = "deep"
    for _ in range(depth):
        value = {"level": value}
    return value


# (id, raw body, expected status). Each must be refused and store nothing.
MALFORMED = [
    ("empty-body", b"", 422),
    ("not-json", b"email=a@example.com&first_name=Al", 422),
    ("truncated-json", b'{"email": "a@example.com"', 422),
    ("json-array", _json([signup()]), 422),
    ("json-string", _json("a@example.com"), 422),
    ("json-null", b"null", 422),
    ("json-number", b"42", 422),
    ("invalid-utf8", b'{"email": "a@example.com", "first_name": "\xff\xfe"}', 422),
    ("nan-literal-is-not-json", b'{"email": "nan@example.com", "assessment_score": NaN}', 422),
    ("missing-email", _json(signup(email=...)), 422),
    ("email-null", _json(signup(email=None)), 422),
    ("email-number", _json(signup(email=12345)), 422),
    ("email-list", _json(signup(email=["a@example.com"])), 422),
    ("email-empty", _json(signup(email="")), 422),
    ("email-no-at", _json(signup(email="not-an-email")), 422),
    ("email-no-domain", _json(signup(email="someone@")), 422),
    ("email-two-ats", _json(signup(email="a@b@example.com")), 422),
    ("email-header-injection-crlf", _json(signup(email="a@b.com\r\nBcc: x@y.com")), 422),
    ("email-header-injection-lf", _json(signup(email="a@b.com\nBcc: x@y.com")), 422),
    ("email-header-injection-comma", _json(signup(email="a@b.com, x@y.com")), 422),
    ("email-display-name", _json(signup(email="Eve <eve@example.com>")), 422),
    ("email-nul", _json(signup(email="a\u0000@example.com")), 422),
    ("email-longer-than-254", _json(signup(email="a" * 64 + "@" + ".".join(["b" * 60] * 4) + ".com")), 422),
    ("red-negative", _json(signup(red_systems=-1)), 422),
    ("orange-over-50", _json(signup(orange_systems=51)), 422),
    ("yellow-huge", _json(signup(yellow_systems=10**30)), 422),
    ("red-boolean", _json(signup(red_systems=True)), 422),
    ("green-boolean-false", _json(signup(green_systems=False)), 422),
    ("red-fraction", _json(signup(red_systems=1.5)), 422),
    ("red-word", _json(signup(red_systems="two")), 422),
    ("red-digits-with-underscore", _json(signup(red_systems="2_0")), 422),
    ("score-text-with-underscore", _json(signup(assessment_score="1_0")), 422),
    ("red-object", _json(signup(red_systems={"count": 2})), 422),
    ("score-101", _json(signup(assessment_score=101.0)), 422),
    ("score-negative", _json(signup(assessment_score=-0.5)), 422),
    ("score-boolean", _json(signup(assessment_score=True)), 422),
    ("first-name-number", _json(signup(first_name=7)), 422),
    ("first-name-201-chars", _json(signup(first_name="N" * 201)), 422),
    ("business-name-201-chars", _json(signup(business_name="B" * 201)), 422),
    ("first-name-nul", _json(signup(first_name="Al\u0000ex")), 422),
    ("first-name-header-injection", _json(signup(first_name="Alex\r\nBcc: x@y.com")), 422),
    ("extra-string-1001-chars", _json(signup(utm_campaign="u" * 1001)), 422),
    ("extra-nested-too-deep", _json(signup(answers=_nested(10))), 422),
    ("extra-deep-string-too-long", _json(signup(answers={"q1": ["x" * 1001]})), 422),
    ("extra-nul", _json(signup(referrer="a\u0000b")), 422),
    ("json-nested-past-recursion-limit", b'{"email": "a@example.com", "x": ' + b"[" * 30_000 + b"]" * 30_000 + b"}",
     422),
    ("first-name-lf-header-injection", _json(signup(first_name="Alex\nBcc: victim@example.com")), 422),
    ("first-name-tab", _json(signup(first_name="Alex\tSmith")), 422),
    ("first-name-line-separator", _json(signup(first_name="Alex\u2028Bcc: x@y.com")), 422),
    ("business-name-bidi-override", _json(signup(business_name="\u202eLtd gnikaB")), 422),
    ("nan-literal-in-extra-field", b'{"email": "nan-extra@example.com", "utm": NaN}', 422),
    ("infinity-literal", b'{"email": "inf@example.com", "assessment_score": Infinity}', 422),
    # JSON escapes that decode to text no database can hold as UTF-8 (a lone half of a surrogate pair),
    # and numbers that overflow to infinity: once a 503 and a non-JSON stored payload.
    ("extra-lone-surrogate", b'{"email": "sur1@example.com", "referrer": "x\\udfffy"}', 422),
    ("extra-nested-key-lone-surrogate", b'{"email": "sur2@example.com", "answers": {"\\ud800": 1}}', 422),
    ("extra-number-overflows-to-infinity", b'{"email": "big@example.com", "budget": 1e400}', 422),
    ("extra-nested-number-overflows", b'{"email": "big2@example.com", "answers": [-1e999]}', 422),
    ("extra-field-name-nul", b'{"email": "key@example.com", "utm\\u0000source": "x"}', 422),
    ("extra-field-name-too-long", _json({"email": "key2@example.com", "k" * 1001: 1}), 422),
    ("body-over-64KiB", _json(signup(notes=["n" * 900] * 80)), 413),
]

@pytest.fixture
def post(client):
    def send(body, **headers):
        payload = {"content": body} if isinstance(body, bytes) else {"json": body}
        return client.post(URL, headers={"content-type": "application/json", **headers}, **payload)

    return send


@pytest.fixture
def app_with(make_settings, clock):
    """A client on an app built with particular settings (secret, rate limit, CORS)."""
    opened = []

    def make(**overrides) -> TestClient:
        services = build_services(make_settings(**overrides), migrate=True, clock=clock)
        client = TestClient(create_app(services))
        client.__enter__()
        opened.append((client, services))
        return client

    yield make
    for client, services in opened:
        client.__exit__(None, None, None)
        services.close()


@pytest.mark.parametrize(("body", "segment"), [pytest.param(b, s, id=s) for b, s in SEED_SIGNUPS])
def test_the_seed_signups_are_accepted_into_their_segments(post, services, body, segment):
    response = post(body)
    assert response.status_code == 202
    assert contract_part(response.json()) == {
        "status": "accepted", "message": "Email sequence will begin shortly", "email": body["email"],
        "campaign": "Christmas 2025", "segment": segment, "duplicate": False,
    }
    assert intake_counts(services.engine) == {"contact": 1, "signup": 1, "enrollment": 1, "send": 7}


def test_the_202_body_has_exactly_the_contract_keys(post):
    for body, _ in SEED_SIGNUPS:
        assert set(post(body).json()) == ACCEPTED_KEYS
    duplicate = post(SEED_SIGNUPS[0][0])
    assert set(duplicate.json()) == ACCEPTED_KEYS


def test_a_202_means_the_signup_and_its_seven_sends_are_already_committed(post, services):
    for n, (body, _) in enumerate(SEED_SIGNUPS, start=1):
        assert post(body).status_code == 202
        # Read on another connection right after each answer: the rows are committed, not queued.
        assert intake_counts(services.engine) == {"contact": n, "signup": n, "enrollment": n, "send": 7 * n}


def test_a_duplicate_signup_is_accepted_and_flagged_as_a_duplicate(post, services):
    first = post(signup(email="twice@example.com"))
    second = post(signup(email="  TWICE@example.com "))
    assert first.status_code == second.status_code == 202
    assert ACCEPTED_KEYS <= set(second.json())
    assert (first.json()["duplicate"], second.json()["duplicate"]) == (False, True)
    assert second.json()["email"] == "twice@example.com"
    assert intake_counts(services.engine) == {"contact": 1, "signup": 2, "enrollment": 1, "send": 7}


def test_the_answer_keeps_the_original_webhook_contract_for_minimal_bodies(post):
    response = post({"email": "only-email@example.com"})
    assert response.status_code == 202
    assert ACCEPTED_KEYS <= set(response.json())
    assert response.json()["segment"] == "OPTIMIZE"


def test_null_counts_and_score_mean_not_given(post, services):
    """An explicit null is what a form sends for an unanswered question: accepted, never a 500."""
    nulls = {name: None for name in ("red_systems", "orange_systems", "yellow_systems", "green_systems",
                                     "assessment_score", "first_name", "business_name")}
    response = post({"email": "nulls@example.com", **nulls})
    assert response.status_code == 202, response.text
    assert response.json()["segment"] == "OPTIMIZE"
    with services.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT red_systems, assessment_score FROM enrollment")).one()
    assert tuple(stored) == (None, None)


def test_unknown_fields_are_accepted_and_kept_in_the_raw_signup(post, services):
    body = signup(email="extra@example.com", utm_source="newsletter", answers={"q1": [1, 2, {"why": "because"}]})
    assert post(body).status_code == 202
    with services.engine.connect() as conn:
        payload = json.loads(conn.scalar(sa.text("SELECT payload FROM signup")))
    assert payload["utm_source"] == "newsletter"
    assert payload["answers"] == {"q1": [1, 2, {"why": "because"}]}


def test_every_malformed_signup_is_refused_and_nothing_is_stored(post, services, subtests):
    # One app per backend for the whole corpus; each case is reported on its own.
    for case, body, status in MALFORMED:
        with subtests.test(case=case):
            response = post(body)
            assert response.status_code == status, response.text[:300]
            if status == 422:
                assert response.json()["errors"], "422 answers name the fields at fault"
            assert intake_counts(services.engine) == NOTHING


# The largest (and smallest) values DESIGN §5 allows: each must be accepted and kept as it was sent.
EMAIL_OF_254 = "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 57 + ".com"
AT_THE_LIMITS = [
    ("email-of-254-chars", {"email": EMAIL_OF_254}),
    ("first-name-of-200-chars", {"first_name": "N" * 200}),
    ("business-name-of-200-chars", {"business_name": "B" * 200}),
    ("counts-of-50", dict.fromkeys(("red_systems", "orange_systems", "yellow_systems", "green_systems"), 50)),
    ("counts-of-0", dict.fromkeys(("red_systems", "orange_systems", "yellow_systems", "green_systems"), 0)),
    ("score-of-100", {"assessment_score": 100}),
    ("score-of-0", {"assessment_score": 0}),
    ("extra-string-of-1000-chars", {"utm_campaign": "u" * 1000}),
]


def test_values_at_the_designed_limits_are_accepted_and_kept_as_sent(post, services, subtests):
    assert len(EMAIL_OF_254) == 254
    for case, fields in AT_THE_LIMITS:
        with subtests.test(case=case):
            body = signup(**{"email": f"{case}@example.com", **fields})
            response = post(body)
            assert response.status_code == 202, response.text[:300]
            assert response.json()["duplicate"] is False
            with services.engine.connect() as conn:
                payload = json.loads(conn.scalar(sa.text(
                    "SELECT s.payload FROM signup s JOIN contact c ON c.id = s.contact_id WHERE c.email = :e"),
                    {"e": body["email"]}))
            assert {k: payload[k] for k in fields} == fields


def test_field_errors_name_each_bad_field(post):
    response = post(signup(email="nope", red_systems=-3, assessment_score=101))
    assert response.status_code == 422
    assert {"email", "red_systems", "assessment_score"} <= set(response.json()["errors"])


def test_the_malformed_corpus_is_large_enough_to_mean_something():
    assert len(MALFORMED) >= 25


def body_of_size(size: int) -> bytes:
    """A valid signup whose JSON is exactly `size` bytes (extra strings stay within 1,000 characters)."""
    body = signup(email="boundary@example.com")
    i = 0
    while len(_json(body)) < size - 1100:
        body[f"pad{i}"] = "x" * 1000
        i += 1
    body["last"] = ""
    body["last"] = "x" * (size - len(_json(body)))
    encoded = _json(body)
    assert len(encoded) == size
    return encoded


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_body_of_exactly_64KiB_is_accepted_and_one_byte_more_is_refused(post, services):
    assert post(body_of_size(64 * 1024 + 1)).status_code == 413
    assert intake_counts(services.engine) == NOTHING
    assert post(body_of_size(64 * 1024)).status_code == 202


def test_a_chunked_body_over_64KiB_is_refused_without_a_content_length(client, services):
    def chunks():
        yield b'{"email": "big@example.com", "notes": "'
        for _ in range(70):
            yield b"n" * 1024
        yield b'"}'

    response = client.post(URL, content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert intake_counts(services.engine) == NOTHING


INTERNATIONAL = ["Zoë", "José Núñez", "渡辺 さくら", "Олена", "محمد", "Þórunn Ægisdóttir", "Nguyễn Thị Minh Khai"]


def test_international_names_are_accepted_and_stored_intact(post, services, subtests):
    for i, name in enumerate(INTERNATIONAL):
        with subtests.test(name=name):
            email = f"intl{i}@example.com"
            response = post(signup(email=email, first_name=name, business_name=f"{name} & Co"))
            assert response.status_code == 202
            with services.engine.connect() as conn:
                stored = conn.execute(sa.select(contact_t.c.first_name, contact_t.c.business_name)
                                      .where(contact_t.c.email == email)).one()
                payloads = [json.loads(p) for p in conn.scalars(sa.text("SELECT payload FROM signup"))]
            assert tuple(stored) == (name, f"{name} & Co")
            assert any(p["first_name"] == name and p["email"] == email for p in payloads)


def test_an_international_email_address_is_accepted(post, services):
    response = post(signup(email="José@Exämple.com"))
    assert response.status_code == 202
    assert intake_counts(services.engine)["enrollment"] == 1


def test_with_a_webhook_secret_a_missing_or_wrong_header_is_refused(app_with):
    client = app_with(webhook_secret="s3cret-hook")
    assert client.post(URL, json=signup()).status_code == 401
    assert client.post(URL, json=signup(), headers={"X-Webhook-Secret": "wrong"}).status_code == 401
    assert client.post(URL, json=signup(), headers={"X-Webhook-Secret": ""}).status_code == 401
    refused = client.post(URL, json=signup(), headers={"X-Webhook-Secret": "s3cret-hook-and-more"})
    assert refused.status_code == 401
    assert "s3cret-hook" not in refused.text
    assert intake_counts(client.app.state.services.engine) == NOTHING


@pytest.mark.parametrize("backend", ["sqlite"])  # HTTP-layer behaviour: one backend is enough
def test_with_a_webhook_secret_the_right_header_is_accepted(app_with):
    client = app_with(webhook_secret="s3cret-hook")
    assert client.post(URL, json=signup(), headers={"X-Webhook-Secret": "s3cret-hook"}).status_code == 202


@pytest.mark.parametrize("backend", ["sqlite"])  # HTTP-layer behaviour: one backend is enough
def test_a_webhook_secret_beyond_ascii_is_accepted_when_sent_as_utf8(app_with):
    client = app_with(webhook_secret="pässwörd-für-die-website")
    sent = "pässwörd-für-die-website".encode()
    assert client.post(URL, json=signup(), headers={"X-Webhook-Secret": sent}).status_code == 202
    assert client.post(URL, json=signup(), headers={"X-Webhook-Secret": b"p\xe4ssw\xf6rd"}).status_code == 401


def _signed(body: bytes, secret: str = "s3cret-hook") -> dict:
    return {"X-Webhook-Signature": body_signature(secret, body), "content-type": "application/json"}


def test_a_body_signed_with_the_webhook_secret_is_accepted_without_the_secret_itself(app_with):
    client = app_with(webhook_secret="s3cret-hook")
    body = _json(signup(email="signed@example.com"))
    assert _signed(body)["X-Webhook-Signature"].startswith("sha256=")
    response = client.post(URL, content=body, headers=_signed(body))
    assert response.status_code == 202, response.text
    upper = {**_signed(body), "X-Webhook-Signature": _signed(body)["X-Webhook-Signature"].upper()}
    assert client.post(URL, content=body, headers=upper).json()["duplicate"] is True  # hex in any case
    assert intake_counts(client.app.state.services.engine)["enrollment"] == 1


@pytest.mark.parametrize("backend", ["sqlite"])  # HTTP-layer behaviour: one backend is enough
def test_a_wrong_or_tampered_body_signature_is_refused_and_stores_nothing(app_with):
    client = app_with(webhook_secret="s3cret-hook")
    body = _json(signup(email="signed@example.com"))
    tampered = _json(signup(email="other@example.com"))
    for content, headers in [
        (body, _signed(body, secret="another-secret")),
        (tampered, _signed(body)),  # signed one body, sent another
        (body, {**_signed(body), "X-Webhook-Signature": "sha256="}),
        (body, {**_signed(body), "X-Webhook-Signature": "sha1=" + "0" * 40}),
        (body, {**_signed(body), "X-Webhook-Signature": "sha256=ünïcode".encode()}),  # not ASCII on the wire
    ]:
        response = client.post(URL, content=content, headers=headers)
        assert response.status_code == 401, response.text
        assert "s3cret-hook" not in response.text
    assert intake_counts(client.app.state.services.engine) == NOTHING


@pytest.mark.parametrize("backend", ["sqlite"])  # HTTP-layer behaviour: one backend is enough
def test_a_signed_body_is_checked_for_size_then_signature_then_fields(app_with):
    client = app_with(webhook_secret="s3cret-hook")
    oversized = b'{"email": "' + b"x" * (70 * 1024) + b'"}'
    invalid = _json(signup(email="not-an-email"))
    assert client.post(URL, content=oversized, headers=_signed(oversized)).status_code == 413
    assert client.post(URL, content=invalid, headers=_signed(b"{}")).status_code == 401
    assert client.post(URL, content=invalid, headers=_signed(invalid)).status_code == 422
    # The secret header, when sent, is what counts: a right signature does not rescue a wrong secret.
    wrong_secret = {**_signed(invalid), "X-Webhook-Secret": "wrong"}
    assert client.post(URL, content=invalid, headers=wrong_secret).status_code == 401


@pytest.mark.parametrize("backend", ["sqlite"])  # HTTP-layer behaviour: one backend is enough
def test_without_a_webhook_secret_a_signature_header_is_ignored(post):
    body = signup(email="unsigned@example.com")
    response = post(body, **{"X-Webhook-Signature": "sha256=whatever"})
    assert response.status_code == 202


@pytest.mark.parametrize("backend", ["sqlite"])  # HTTP-layer behaviour: one backend is enough
def test_the_secret_is_checked_before_the_size_and_the_size_before_validation(app_with):
    client = app_with(webhook_secret="s3cret-hook")
    oversized = b'{"email": "' + b"x" * (70 * 1024) + b'"}'
    invalid = _json(signup(email="not-an-email"))
    good = {"X-Webhook-Secret": "s3cret-hook", "content-type": "application/json"}
    bad = {"X-Webhook-Secret": "wrong", "content-type": "application/json"}
    assert client.post(URL, content=oversized, headers=bad).status_code == 401
    assert client.post(URL, content=invalid, headers=bad).status_code == 401
    assert client.post(URL, content=oversized, headers=good).status_code == 413
    assert client.post(URL, content=invalid, headers=good).status_code == 422


@pytest.mark.parametrize("backend", ["sqlite"])  # HTTP-layer behaviour: one backend is enough
def test_a_client_over_the_intake_rate_limit_gets_429(app_with):
    client = app_with(intake_rate_limit=3)
    answers = [client.post(URL, json=signup(email=f"rate{i}@example.com")).status_code for i in range(4)]
    assert answers == [202, 202, 202, 429]
    assert intake_counts(client.app.state.services.engine)["enrollment"] == 3


@pytest.mark.parametrize("backend", ["sqlite"])  # HTTP-layer behaviour: one backend is enough
def test_guesses_at_the_webhook_secret_count_against_the_rate_limit(app_with):
    client = app_with(intake_rate_limit=3, webhook_secret="s3cret-hook")
    guesses = [client.post(URL, json=signup(), headers={"X-Webhook-Secret": f"guess-{i}"}).status_code
               for i in range(5)]
    assert guesses == [401, 401, 401, 429, 429]
    assert intake_counts(client.app.state.services.engine) == NOTHING


@pytest.mark.parametrize("backend", ["sqlite"])  # HTTP-layer behaviour: one backend is enough
def test_without_a_rate_limit_many_signups_from_one_client_are_accepted(post):
    assert {post(signup(email=f"many{i}@example.com")).status_code for i in range(12)} == {202}


def _preflight(client: TestClient, origin: str):
    return client.options(URL, headers={
        "Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type",
    })


@pytest.mark.parametrize("backend", ["sqlite"])  # HTTP-layer behaviour: one backend is enough
def test_cors_allows_a_preflight_from_the_configured_site(app_with):
    client = app_with(cors_origins="https://site.example")
    response = _preflight(client, "https://site.example")
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://site.example"
    assert "POST" in response.headers["access-control-allow-methods"]


@pytest.mark.parametrize("backend", ["sqlite"])  # HTTP-layer behaviour: one backend is enough
def test_cors_refuses_a_preflight_from_any_other_site(app_with):
    client = app_with(cors_origins="https://site.example")
    response = _preflight(client, "https://evil.example")
    assert response.status_code >= 400
    assert response.headers.get("access-control-allow-origin") != "https://evil.example"


def _intake_metrics(client) -> dict:
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    samples = {}
    for name in ("nurture_intake_signups", "nurture_intake_batch_signups", "nurture_intake_commit_seconds",
                 "nurture_intake_wait_seconds"):
        for sample in families[name].samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_show_the_intake_outcomes_batches_and_waits(client, post):
    for email in ("m1@example.com", "m2@example.com", "m1@example.com"):  # the third is a resubmission
        assert post({"email": email, "red_systems": 2}).status_code == 202
    assert post({"email": "not-an-email"}).status_code == 422  # refused before the intake: not counted

    m = _intake_metrics(client)
    assert m[("nurture_intake_signups_total", (("outcome", "enrolled"),))] == 2
    assert m[("nurture_intake_signups_total", (("outcome", "updated"),))] == 1
    batches = m[("nurture_intake_batch_signups_count", ())]
    assert 1 <= batches <= 3 and m[("nurture_intake_batch_signups_sum", ())] == 3  # every signup in some batch
    assert m[("nurture_intake_commit_seconds_count", ())] == batches
    assert m[("nurture_intake_wait_seconds_count", ())] == 3
    assert 0 < m[("nurture_intake_commit_seconds_sum", ())] <= m[("nurture_intake_wait_seconds_sum", ())]


def test_health_reports_configuration_database_worker_and_queue(client, post):
    post(signup(email="queued@example.com"))
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert {"status", "testing_mode", "notion_configured", "resend_configured", "discord_configured",
            "database", "worker_last_seen", "queue"} <= set(body)
    assert body["status"] == "healthy" and body["database"] == "ok"
    assert (body["testing_mode"], body["notion_configured"], body["resend_configured"],
            body["discord_configured"]) == (False, False, False, False)
    assert body["worker_last_seen"] is None
    assert body["queue"]["scheduled"] == 7
    assert client.head("/health").status_code == 200  # uptime monitors probe with HEAD
    assert client.get("/openapi.json").status_code == client.get("/docs").status_code == 404  # nothing to browse


@pytest.mark.parametrize("backend", ["sqlite"])
def test_health_reports_the_stored_test_mode_not_the_start_up_variable(client, services):
    with db.write_transaction(services.engine) as conn:
        switches.set_test_mode(conn, True, actor="dashboard", now=services.clock())
    assert services.settings.testing_mode is False
    assert client.get("/health").json()["testing_mode"] is True


def _refuse_contact(engine, email: str) -> None:
    """Make the database itself refuse one address (a trigger), as a broken row or disk would."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.email = '{email}' THEN RAISE EXCEPTION 'refused by test'; END IF; RETURN NEW; END $$")
            conn.exec_driver_sql("CREATE TRIGGER test_refuse BEFORE INSERT ON contact FOR EACH ROW "
                                 "EXECUTE FUNCTION test_refuse()")
        else:
            conn.exec_driver_sql(f"CREATE TRIGGER test_refuse BEFORE INSERT ON contact WHEN NEW.email = '{email}' "
                                 "BEGIN SELECT RAISE(ABORT, 'refused by test'); END")


def test_a_signup_the_database_refuses_gets_503_and_the_intake_goes_on(services, client, post, caplog):
    _refuse_contact(services.engine, "broken@example.com")

    refused = post({"email": "broken@example.com", "red_systems": 2})
    assert refused.status_code == 503
    assert refused.json() == {"status": "error", "message": "the signup could not be stored right now; please retry"}
    assert refused.headers["retry-after"] == "5"
    assert "refused by test" not in refused.text  # the database's words stay in the log
    [failure] = [r for r in caplog.records if r.levelno >= logging.WARNING]  # logged once, by the writer
    assert failure.getMessage() == "intake failed for 1 signup(s)" and failure.exc_info  # a refusal is a bug: traceback

    assert post({"email": "fine@example.com", "red_systems": 2}).status_code == 202
    m = _intake_metrics(client)
    assert m[("nurture_intake_signups_total", (("outcome", "failed"),))] == 1
    assert m[("nurture_intake_signups_total", (("outcome", "enrolled"),))] == 1
    with db.read_transaction(services.engine) as conn:
        assert conn.execute(sa.text("SELECT email FROM contact")).scalars().all() == ["fine@example.com"]
        assert conn.execute(sa.text("SELECT count(*) FROM send")).scalar() == 7


def test_one_refused_signup_does_not_fail_the_neighbours_committed_in_its_batch(services, monkeypatch):
    from core import intake

    _refuse_contact(services.engine, "broken@example.com")
    monkeypatch.setattr(intake, "GATHER_SECONDS", 0.5)  # so the three surely share one batch
    writer = intake.GroupCommitWriter(services)

    async def submit_together():
        futures = [writer.submit(signup_request(email=e)) for e in ("a@example.com", "broken@example.com", "b@example.com")]
        return await asyncio.gather(*futures, return_exceptions=True)

    try:
        first, broken, last = asyncio.run(submit_together())
    finally:
        writer.stop()
    assert isinstance(broken, sa.exc.DBAPIError)
    assert (first.email, last.email) == ("a@example.com", "b@example.com") and not first.duplicate
    with db.read_transaction(services.engine) as conn:
        assert sorted(conn.execute(sa.text("SELECT email FROM contact")).scalars()) == ["a@example.com", "b@example.com"]
        assert conn.execute(sa.text("SELECT count(*) FROM send")).scalar() == 14
    batches = {s.name: s.value for s in services.metrics.intake_batch_size.collect()[0].samples}
    assert (batches["nurture_intake_batch_signups_count"], batches["nurture_intake_batch_signups_sum"]) == (1, 3)


class _LockHolder:
    """Another session holding a lock the intake needs: SQLite's write lock, or on PostgreSQL an
    exclusive lock on the contact table. The engine's lock wait is cut to 200 ms for the test."""

    def __init__(self, engine: sa.Engine):
        if engine.dialect.name == "sqlite":
            import sqlite3

            sa.event.listen(engine, "connect", lambda dbapi, _: dbapi.execute("PRAGMA busy_timeout=200"))
            self._conn = sqlite3.connect(engine.url.database, isolation_level=None)
            self._conn.execute("BEGIN IMMEDIATE")
            self.release = lambda: self._conn.execute("ROLLBACK")
        else:
            import psycopg

            def short_lock_timeout(dbapi, _):
                with dbapi.cursor() as cur:
                    cur.execute("SET lock_timeout = 200")
                dbapi.commit()

            sa.event.listen(engine, "connect", short_lock_timeout)  # runs after the engine's own 30 s
            self._conn = psycopg.connect(engine.url.set(drivername="postgresql").render_as_string(False))
            self._conn.execute("LOCK TABLE contact IN ACCESS EXCLUSIVE MODE")
            self.release = self._conn.rollback
        engine.dispose()  # every pooled connection is opened afresh with the short wait

    def close(self) -> None:
        self._conn.close()


def test_every_connection_gives_up_waiting_for_a_lock_after_30_seconds(services):
    """A lock held elsewhere (a manual LOCK TABLE, a stuck session) fails the intake with a 503 in time,
    instead of hanging every webhook request: SQLite's busy_timeout, PostgreSQL's lock_timeout."""
    query = "PRAGMA busy_timeout" if services.engine.dialect.name == "sqlite" else "SHOW lock_timeout"
    with services.engine.connect() as conn:
        assert conn.exec_driver_sql(query).scalar() in (30000, "30s")


def test_a_locked_database_fails_the_batch_once_instead_of_retrying_each_signup(services, monkeypatch, caplog):
    from core import intake

    caplog.set_level(logging.INFO)
    attempts = []
    enroll_now = intake.enroll_now
    monkeypatch.setattr(intake, "enroll_now", lambda *args: attempts.append(1) or enroll_now(*args))
    monkeypatch.setattr(intake, "GATHER_SECONDS", 0.5)  # so the three surely share one batch
    holder = _LockHolder(services.engine)
    writer = intake.GroupCommitWriter(services)

    async def submit(*emails):
        return await asyncio.gather(*(writer.submit(signup_request(email=e)) for e in emails), return_exceptions=True)

    try:
        outcomes = asyncio.run(submit("a@example.com", "b@example.com", "c@example.com"))
        assert len(attempts) == 1  # one transaction tried, not one more per signup (each waiting again)
        assert all(isinstance(o, sa.exc.OperationalError) for o in outcomes)
        holder.release()
        [stored] = asyncio.run(submit("a@example.com"))
    finally:
        holder.close()
        writer.stop()
    assert stored.email == "a@example.com" and not stored.duplicate
    assert intake_counts(services.engine)["send"] == 7
    logged = [(r.levelname, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]
    assert [level for level, _ in logged] == ["WARNING", "INFO"], logged  # one line for the outage, no traceback
    assert logged[0][1].startswith("intake: the database is unavailable, retrying quietly until it answers: ")
    assert logged[1][1].startswith("intake: the database answers again")


@pytest.mark.parametrize("backend", ["sqlite"])  # the writer's own thread: one backend is enough
def test_a_writer_stuck_in_a_batch_stops_within_its_budget_and_says_so(services, monkeypatch, caplog):
    # The stop runs inside the worker's join of its API thread: a batch held up by the database for longer
    # must not hold the stop (and the join, and systemd's TimeoutStopSec) with it.
    from core import intake

    monkeypatch.setattr(intake, "STOP_SECONDS", 0.5)
    entered, release = threading.Event(), threading.Event()
    enroll_now = intake.enroll_now

    def held_up(*args):
        entered.set()
        release.wait(30)
        return enroll_now(*args)

    monkeypatch.setattr(intake, "enroll_now", held_up)
    writer = intake.GroupCommitWriter(services)

    async def submit_one():
        writer.submit(signup_request(email="stuck@example.com"))

    left_running = [writer._thread]
    try:
        asyncio.run(submit_one())
        assert entered.wait(10), "the writer never took the batch"
        left_running.append(writer._checkpointer._thread)  # (None on PostgreSQL: no checkpointer there)
        started = time.monotonic()
        writer.stop()
        took = time.monotonic() - started
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    finally:
        release.set()
        for thread in left_running:  # let them finish before the database goes away under them
            if thread is not None:
                thread.join(timeout=10)
    assert 0.5 <= took < 2, took
    assert len(warnings) == 1 and "still committing a batch" in warnings[0], warnings


def test_a_client_that_hangs_up_mid_body_gets_a_400_and_no_traceback_in_the_log(services, caplog):
    # Driven at the ASGI level: the server tells the app the client went away before the body ended.
    app = create_app(services)
    messages = iter([{"type": "http.request", "body": b'{"email": "gone', "more_body": True},
                     {"type": "http.disconnect"}])
    sent = []

    async def receive():
        return next(messages)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": URL, "raw_path": URL.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json"), (b"content-length", b"500")],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}
    asyncio.run(app(scope, receive, send))

    assert sent[0]["status"] == 400
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert intake_counts(services.engine) == NOTHING


def test_health_says_degraded_while_signups_cannot_be_written_and_healthy_once_they_can(services, client, post):
    """A database that answers reads but refuses writes (a full disk, a held lock) must not look healthy."""
    holder = _LockHolder(services.engine)
    try:
        assert post(signup(email="during@example.com")).status_code == 503
        during = client.get("/health")
        holder.release()
    finally:
        holder.close()
    assert during.status_code == 503
    body = during.json()
    assert (body["status"], body["database"]) == ("degraded", "writes failing")
    assert body["failing"] == ["intake"]

    assert post(signup(email="after@example.com")).status_code == 202
    after = client.get("/health")
    assert after.status_code == 200 and after.json()["status"] == "healthy" and "failing" not in after.json()


@pytest.mark.parametrize("backend", ["sqlite"])  # the database is replaced by one that cannot be reached
def test_every_endpoint_answers_503_not_500_while_the_database_cannot_be_reached(make_settings, clock):
    from core.unsubscribe import make_token
    from tests.support import WEBHOOK_SECRET, signed

    services = build_services(make_settings(resend_webhook_secret=WEBHOOK_SECRET), migrate=True, clock=clock)
    services.engine.dispose()
    services.engine = db.create_db_engine("postgresql+psycopg://nurture@127.0.0.1:1/nurture")  # nothing listens
    token = make_token(services.secret_key, "a-contact-id")
    event = {"type": "email.bounced", "created_at": "2025-12-01T09:00:00Z",
             "data": {"email_id": "re_1", "to": ["pat@example.com"]}}
    try:
        with TestClient(create_app(services)) as client:
            answers = {"GET unsubscribe": client.get(f"/unsubscribe/{token}"),
                       "POST unsubscribe": client.post(f"/unsubscribe/{token}"),
                       "resend webhook": client.post("/webhook/resend", **signed(event)),
                       "signup": client.post("/webhook/christmas-signup", json=signup(email="pat@example.com"))}
    finally:
        services.close()
    assert {name: answer.status_code for name, answer in answers.items()} == dict.fromkeys(answers, 503)
    assert all(answer.headers.get("retry-after") for answer in answers.values())
    assert "try again" in answers["POST unsubscribe"].text  # a page for a person, not a bare error


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])
def test_every_endpoint_answers_503_not_500_while_postgresql_only_reads(make_settings, clock, pg_migrated_copy,
                                                                       caplog):
    # A failover onto a standby, or a host that turns on default_transaction_read_only as its disk fills:
    # PostgreSQL answers writes with 25006, which psycopg raises as an InternalError, not an OperationalError.
    from tests.support import WEBHOOK_SECRET, signed

    services = build_services(make_settings(resend_webhook_secret=WEBHOOK_SECRET, database_url=pg_migrated_copy),
                              migrate=True, clock=clock)
    with services.engine.connect() as conn:  # this test's own copy, dropped after it
        conn.exec_driver_sql(f'ALTER DATABASE "{services.engine.url.database}" SET default_transaction_read_only = on')
        conn.commit()
    services.engine.dispose()
    event = {"type": "email.bounced", "created_at": "2025-12-01T09:00:00Z",
             "data": {"email_id": "re_1", "to": ["pat@example.com"]}}
    try:
        with TestClient(create_app(services)) as client:
            answers = {"resend webhook": client.post("/webhook/resend", **signed(event)),
                       "signup": client.post("/webhook/christmas-signup", json=signup(email="pat@example.com"))}
    finally:
        services.close()
    assert {name: answer.status_code for name, answer in answers.items()} == dict.fromkeys(answers, 503)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "an outage, not a traceback per request"
