"""The notion-client adapter over httpx.MockTransport: API 2025-09-03 calls, pacing, error translation."""

import json

import httpx
import pytest

from core.notion.client import NotionClient
from core.notion.errors import NotionAccessError, NotionPageConflict, NotionRequestError, NotionUnavailable
from core.notion.properties import EXPECTED

SCHEMA = {name: {"id": name[:4], "name": name, "type": kind, kind: {}} for name, kind in EXPECTED.items()}


class FakeTime:
    def __init__(self):
        self.now, self.slept = 0.0, []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Api:
    """Notion's routes as a MockTransport handler, with scripted answers and every request kept."""

    def __init__(self, *, database_found: bool = True):
        self.requests: list[httpx.Request] = []
        self.answers: list[httpx.Response] = []
        self.database_found = database_found
        self.pages: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.answers:
            return self.answers.pop(0)
        path, method = request.url.path, request.method
        if path == "/v1/databases/db-1":
            if not self.database_found:
                return error(404, "object_not_found", "Could not find database")
            return httpx.Response(200, json={"object": "database", "id": "db-1", "data_sources": [{"id": "ds-1"}]})
        if path in ("/v1/data_sources/ds-1", "/v1/data_sources/db-1") and method in ("GET", "PATCH"):
            return httpx.Response(200, json={"object": "data_source", "id": "ds-1", "properties": SCHEMA})
        if path.endswith("/query"):
            return httpx.Response(200, json={"object": "list", "results": self.pages, "has_more": False})
        if path.startswith("/v1/pages"):
            return httpx.Response(200, json={"object": "page", "id": "page-1", "url": "https://notion.so/page1",
                                             "created_time": "2025-12-01T09:00:00.000Z", "properties": {}})
        return error(400, "invalid_request_url", "no such route")

    def bodies(self, suffix: str) -> list[dict]:
        return [json.loads(r.content) for r in self.requests if r.url.path.endswith(suffix)]


def error(status: int, code: str, message: str, headers: dict | None = None) -> httpx.Response:
    return httpx.Response(status, json={"object": "error", "status": status, "code": code, "message": message},
                          headers=headers)


def client(api: Api, time: FakeTime | None = None, **options) -> NotionClient:
    time = time or FakeTime()
    return NotionClient("secret-token", "db-1", base_url="http://notion.test/v1/", http=httpx.Client(
        transport=httpx.MockTransport(api)), clock=time.clock, sleep=time.sleep, **options)


def test_requests_carry_the_token_and_notion_version_2025_09_03_to_the_configured_url():
    api = Api()

    client(api).schema()

    first = api.requests[0]
    assert str(first.url) == "http://notion.test/v1/databases/db-1"
    assert first.headers["Notion-Version"] == "2025-09-03"
    assert first.headers["Authorization"] == "Bearer secret-token"
    assert api.requests[1].url.path == "/v1/data_sources/ds-1"


def test_pages_are_created_under_the_data_source_not_the_database():
    api = Api()

    page = client(api).create_page({"Email": {"email": "a@example.com"}})

    assert api.bodies("/v1/pages")[0]["parent"] == {"type": "data_source_id", "data_source_id": "ds-1"}
    assert page.id == "page-1" and page.url == "https://notion.so/page1"


def test_lookups_by_email_ask_once_per_fifty_addresses_with_an_or_filter_oldest_first():
    api = Api()
    api.pages = [{"object": "page", "id": "p1", "properties": {"Email": {"type": "email", "email": "a0@example.com"}}}]

    found = client(api).find_pages([f"a{i}@example.com" for i in range(60)])

    queries = api.bodies("/query")
    assert len(queries) == 2
    assert len(queries[0]["filter"]["or"]) == 50
    assert queries[0]["filter"]["or"][0] == {"property": "Email", "email": {"equals": "a0@example.com"}}
    assert queries[0]["sorts"] == [{"timestamp": "created_time", "direction": "ascending"}]
    assert [p.id for p in found["a0@example.com"]] == ["p1", "p1"]  # both chunks answered with the same page here


def test_a_database_id_that_is_really_a_data_source_id_still_works():
    api = Api(database_found=False)

    assert client(api).schema()["Stop"] == "checkbox"
    assert [r.url.path for r in api.requests] == ["/v1/databases/db-1", "/v1/data_sources/db-1",
                                                  "/v1/data_sources/db-1"]


def test_the_column_list_is_read_again_after_five_minutes_so_changes_in_notion_reach_a_running_worker():
    api, time = Api(), FakeTime()
    notion = client(api, time)

    def schema_reads() -> int:
        return sum(r.url.path == "/v1/data_sources/ds-1" for r in api.requests)

    notion.schema()
    time.now += 299
    notion.schema()
    assert schema_reads() == 1, "cached within five minutes"
    time.now += 2
    notion.schema()
    assert schema_reads() == 2


def test_a_429_is_waited_out_for_its_retry_after_and_the_request_goes_again():
    api, time = Api(), FakeTime()
    notion = client(api, time)
    notion.schema()
    api.answers.append(error(429, "rate_limited", "slow down", {"Retry-After": "2"}))
    before = time.now

    page = notion.create_page({})

    assert page.id == "page-1"
    assert [r.url.path for r in api.requests[-2:]] == ["/v1/pages", "/v1/pages"]
    assert 2.0 <= time.now - before <= 2.0 + 2 / 3


def test_repeated_429s_become_notion_unavailable_with_the_retry_after():
    api, time = Api(), FakeTime()
    notion = client(api, time)
    api.answers.extend([error(429, "rate_limited", "slow down", {"Retry-After": "1"})] * 3)

    with pytest.raises(NotionUnavailable) as caught:
        notion.schema()

    assert caught.value.status == 429 and caught.value.retry_after == 1.0
    assert len(api.requests) == 3


def test_a_pause_longer_than_max_wait_is_raised_at_once_instead_of_slept_through():
    api, time = Api(), FakeTime()
    notion = client(api, time, max_wait=5)
    api.answers.append(error(429, "rate_limited", "slow down", {"Retry-After": "60"}))
    with pytest.raises(NotionUnavailable):
        notion.schema()
    sent = len(api.requests)

    with pytest.raises(NotionUnavailable) as caught:
        notion.schema()

    assert len(api.requests) == sent and time.slept == []
    assert caught.value.retry_after == pytest.approx(60)


def test_a_retry_after_given_as_an_http_date_counts_from_the_answers_date():
    api, time = Api(), FakeTime()
    notion = client(api, time, max_wait=5)
    api.answers.append(error(429, "rate_limited", "slow down", {"Retry-After": "Mon, 01 Dec 2025 09:01:30 GMT",
                                                                  "Date": "Mon, 01 Dec 2025 09:00:00 GMT"}))

    with pytest.raises(NotionUnavailable) as caught:
        notion.schema()

    assert caught.value.retry_after == pytest.approx(90)


def test_requests_are_paced_to_about_three_a_second():
    api, time = Api(), FakeTime()
    notion = client(api, time)

    for _ in range(9):
        notion.update_page("page-1", {})

    # One every third of a second, without bursts: Notion's burst allowance absorbs network jitter.
    assert time.now == pytest.approx(8 / 3, abs=0.01)


@pytest.mark.parametrize("answer", [error(500, "internal_server_error", "boom"),
                                    error(503, "service_unavailable", "down"),
                                    httpx.Response(502, text="<html>bad gateway</html>")])
def test_server_errors_are_transient(answer):
    api = Api()
    api.answers.append(answer)

    with pytest.raises(NotionUnavailable):
        client(api).update_page("page-1", {})


def test_a_success_answer_that_is_not_json_is_unavailable_not_a_crash():
    # A NOTION_API_URL pointing at a web page or a proxy's sign-in form answers 200 with HTML: the notion
    # command ended in a JSONDecodeError traceback, and the worker's sync job in one per run.
    api = Api()
    api.answers.append(httpx.Response(200, text="<html>sign in</html>"))

    with pytest.raises(NotionUnavailable, match="not JSON"):
        client(api).schema()


def test_a_conflict_is_this_pages_alone_not_an_outage_of_notion():
    api = Api()
    api.answers.append(error(409, "conflict_error", "collision"))

    with pytest.raises(NotionPageConflict) as caught:
        client(api).update_page("page-1", {})
    assert isinstance(caught.value, NotionRequestError) and not caught.value.page_gone


def test_network_failures_and_timeouts_are_transient():
    def refuse(request):
        raise httpx.ConnectError("connection refused", request=request)

    def slow(request):
        raise httpx.ReadTimeout("timed out", request=request)

    for handler in (refuse, slow):
        notion = NotionClient("t", "db-1", http=httpx.Client(transport=httpx.MockTransport(handler)))
        with pytest.raises(NotionUnavailable):
            notion.schema()


def test_a_refused_token_or_a_missing_database_is_an_access_error():
    api = Api()
    api.answers.append(error(401, "unauthorized", "API token is invalid."))
    with pytest.raises(NotionAccessError):
        client(api).schema()

    missing = Api(database_found=False)
    missing.answers.extend([error(404, "object_not_found", "no db"), error(404, "object_not_found", "no source")])
    with pytest.raises(NotionAccessError):
        client(missing).schema()


def test_a_refused_page_write_is_a_request_error_and_a_deleted_page_says_so():
    api = Api()
    api.answers.extend([error(400, "validation_error", "Stop is not a property that exists."),
                        error(404, "object_not_found", "Could not find page")])
    notion = client(api)

    with pytest.raises(NotionRequestError) as invalid:
        notion.update_page("page-1", {"Stop": {"checkbox": True}})
    with pytest.raises(NotionRequestError) as gone:
        notion.update_page("page-1", {})

    assert invalid.value.code == "validation_error" and not invalid.value.page_gone
    assert gone.value.page_gone


def test_stopped_pages_asks_for_ticked_stop_boxes_on_active_sequences_only():
    api = Api()

    client(api).stopped_pages()

    assert api.bodies("/query")[0]["filter"] == {"and": [
        {"property": "Stop", "checkbox": {"equals": True}},
        {"or": [{"property": "Status", "select": {"equals": "active"}},
                {"property": "Status", "select": {"is_empty": True}}]}]}


def test_stopped_pages_filters_only_on_the_stop_box_when_status_is_a_notion_status_column(monkeypatch):
    api = Api()
    monkeypatch.setitem(SCHEMA, "Status", {"id": "Stat", "name": "Status", "type": "status", "status": {}})

    client(api).stopped_pages()

    # Notion refuses a status filter naming an option the column lacks ("active" rarely is one).
    assert api.bodies("/query")[0]["filter"] == {"property": "Stop", "checkbox": {"equals": True}}


def test_an_error_code_the_sdk_does_not_know_keeps_notions_own_code_and_message():
    # Notion documents 503 database_connection_unavailable (developers.notion.com/reference/status-codes);
    # notion-client 3.1 knows no such code and says only "Request to Notion API failed with status: 503".
    api = Api()
    api.answers.append(error(503, "database_connection_unavailable", "Notion's database is unavailable."))

    with pytest.raises(NotionUnavailable) as caught:
        client(api).update_page("page-1", {})

    assert caught.value.code == "database_connection_unavailable"
    assert "Notion's database is unavailable." in str(caught.value)
