"""A stand-in for Resend's HTTP API (POST /emails, POST /emails/batch, GET /domains) on 127.0.0.1.

In a test:   `with ResendStandIn(api_key="re_test", rate_limit=5) as api: resend.api_url = api.url`.
As a script: `python tests/standins/resend_api.py --port 0 --rate-limit 5 --latency-ms 40` prints
`listening on http://127.0.0.1:PORT` and serves until killed. Other processes then use
GET /_sent (accepted emails, JSON), GET /_stats, POST /_faults (one fault object or a list,
fields as in `Fault`) and POST /_reset. Control paths need no key and are not rate limited.
"""

import argparse
import hashlib
import json
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

if __package__:
    from .jsonserver import JsonStandIn
    from .resend_rules import Answer, Fault, FixedWindow, Problem, SentEmail, error, problem, recipients
else:  # run as a script, `python tests/standins/resend_api.py`, with this folder first on sys.path
    from jsonserver import JsonStandIn  # type: ignore[no-redef]
    from resend_rules import (  # type: ignore[no-redef]
        Answer, Fault, FixedWindow, Problem, SentEmail, error, problem, recipients,
    )

__all__ = ["Fault", "ResendStandIn", "SentEmail"]


class ResendStandIn(JsonStandIn):
    """The API's state and rules on a JsonStandIn server; start()/stop() or use as a context manager."""

    def __init__(self, api_key: str | None = "re_test_key", rate_limit: float = 2.0, latency_ms: float = 0.0,
                 domains: Mapping[str, str] | None = None, host: str = "127.0.0.1", port: int = 0,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__(host, port)
        self.api_key = api_key
        self.latency = latency_ms / 1000
        # Without explicit domains any sender goes and GET /domains lists one verified example.com.
        self.domains = dict(domains or {"example.com": "verified"})
        self._check_senders = domains is not None
        self._limiter = FixedWindow(rate_limit, clock) if rate_limit else None
        self._lock = threading.Lock()
        self._sent: list[SentEmail] = []
        self._faults: list[Fault] = []
        self._replies: dict[str, tuple[str, Answer]] = {}
        self._in_flight: set[str] = set()
        self._stats = dict.fromkeys(("requests", "accepted", "rate_limited", "replayed", "faulted"), 0)

    @property
    def sent(self) -> list[SentEmail]:
        """A copy of every accepted email, oldest first."""
        with self._lock:
            return list(self._sent)

    @property
    def stats(self) -> dict[str, int]:
        """Counts of API calls, accepted emails, 429s, idempotent replays and scripted faults."""
        with self._lock:
            return dict(self._stats)

    def in_flight(self, key: str) -> bool:
        """Whether a call under this idempotency key has arrived and is not answered yet."""
        with self._lock:
            return key in self._in_flight

    def fail(self, status: int | None = 500, times: int = 1, **fault: Any) -> None:
        """Answer the next `times` API calls with a scripted fault (see `Fault` for the options)."""
        with self._lock:
            self._faults.extend(Fault(status=status, **fault) for _ in range(times))

    def reset(self) -> None:
        """Forget sent emails, faults, idempotency keys and counts."""
        with self._lock:
            self._sent.clear()
            self._faults.clear()
            self._replies.clear()
            self._stats = dict.fromkeys(self._stats, 0)

    def handle(self, method: str, path: str, headers: Mapping[str, str], raw: bytes) -> Answer | None:
        """Answer a control call (/_…) or an API call; None means drop the connection."""
        path = path.split("?")[0]
        if path.startswith("/_"):
            return self.control(method, path, raw)
        return self._api(method, path, headers, raw)

    def _api(self, method: str, path: str, headers: Mapping[str, str], raw: bytes) -> Answer | None:
        # A key is in flight from arrival to answer; the same key again meanwhile is refused, as Resend does.
        key = headers.get("idempotency-key") if method == "POST" else None
        with self._lock:
            if key is not None and key in self._in_flight:
                self._stats["requests"] += 1
                return error(409, "Same idempotency key used while original request is still in progress.",
                             "concurrent_idempotent_requests")
            if key is not None:
                self._in_flight.add(key)
        try:
            return self._answer(method, path, headers, raw)
        finally:
            with self._lock:
                self._in_flight.discard(key)

    def _answer(self, method: str, path: str, headers: Mapping[str, str], raw: bytes) -> Answer | None:
        time.sleep(self.latency)
        with self._lock:
            self._stats["requests"] += 1
            fault = next((f for f in self._faults if f.path in (None, path)), None)
            if fault is not None:
                self._faults.remove(fault)
                self._stats["faulted"] += 1
            limit_headers = self._limiter.take(consume=False)[1] if self._limiter else {}
            if fault is not None and not fault.accept:
                return self._fault_answer(fault, limit_headers)
            answer = self._authorise(headers.get("authorization", ""))
            if answer is None and self._limiter is not None:
                allowed, limit_headers = self._limiter.take()
                if not allowed:
                    self._stats["rate_limited"] += 1
                    answer = error(429, "Too many requests. You can only make a few requests per second.")
            if answer is None:
                answer = self._route(method, path, headers, raw)
            if fault is not None:
                return self._fault_answer(fault, limit_headers)
            return answer[0], answer[1], {**limit_headers, **answer[2]}

    def control(self, method: str, path: str, raw: bytes) -> Answer:
        """The /_ paths other processes use to script faults and read what was sent."""
        if (method, path) == ("GET", "/_sent"):
            return 200, [asdict(email) for email in self.sent], {}
        if (method, path) == ("GET", "/_stats"):
            return 200, self.stats, {}
        if (method, path) == ("POST", "/_reset"):
            self.reset()
            return 200, {"reset": True}, {}
        if (method, path) == ("POST", "/_faults"):
            try:
                faults = json.loads(raw or b"[]")
                faults = faults if isinstance(faults, list) else [faults]
                for fault in faults:
                    self.fail(**fault)
            except (TypeError, ValueError) as bad:
                return error(400, f"Bad fault: {bad}")
            return 200, {"queued": sum(int(f.get("times", 1)) for f in faults)}, {}
        return error(404, f"No control endpoint {method} {path}.")

    def _fault_answer(self, fault: Fault, limit_headers: dict[str, str]) -> Answer | None:
        if fault.status is None:
            return None
        extra = {} if fault.retry_after is None else {"retry-after": _header(fault.retry_after)}
        return error(fault.status, fault.message, fault.name, {**limit_headers, **extra})

    def _authorise(self, authorization: str) -> Answer | None:
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip() or key.strip() == "None":
            return error(401, "Missing API key in the authorization header.", "missing_api_key")
        if self.api_key is not None and key.strip() != self.api_key:
            return error(401, "API key is invalid", "validation_error")
        return None

    def _route(self, method: str, path: str, headers: Mapping[str, str], raw: bytes) -> Answer:
        if (method, path) == ("GET", "/domains"):
            data = [
                {"id": str(uuid.uuid5(uuid.NAMESPACE_DNS, name)), "name": name, "status": status,
                 "created_at": "2025-11-01 00:00:00+00", "region": "us-east-1"}
                for name, status in self.domains.items()
            ]
            return 200, {"object": "list", "has_more": False, "data": data}, {}
        if method != "POST" or path not in ("/emails", "/emails/batch"):
            return error(404, f"The requested endpoint {method} {path} does not exist.")
        try:
            body = json.loads(raw)
        except ValueError:
            return error(400, "The request body is not valid JSON.")
        key = headers.get("idempotency-key")
        if key is not None and not 1 <= len(key) <= 256:
            return error(400, "The key must be between 1-256 chars.", "invalid_idempotency_key")
        fingerprint = hashlib.sha256(path.encode() + json.dumps(body, sort_keys=True).encode()).hexdigest()
        if key in self._replies:
            if self._replies[key][0] != fingerprint:
                return error(409, "Same idempotency key used with a different request payload.",
                             "invalid_idempotent_request")
            self._stats["replayed"] += 1
            return self._replies[key][1]
        permissive = headers.get("x-batch-validation", "strict").lower() == "permissive"
        answer = self._send_batch(body, key, permissive) if path.endswith("batch") else self._send_one(body, key)
        if key is not None and answer[0] == 200:
            self._replies[key] = (fingerprint, answer)
        return answer

    def _send_one(self, email: Any, key: str | None) -> Answer:
        found = self._problem(email)
        if found:
            return error(*found)
        return 200, {"id": self._record(email, key, batch=False)}, {}

    def _send_batch(self, emails: Any, key: str | None, permissive: bool) -> Answer:
        if not isinstance(emails, list) or not 1 <= len(emails) <= 100:
            return error(422, "A batch must be a list of 1 to 100 emails.")
        problems = {i: p for i, p in enumerate(map(self._problem, emails)) if p}
        if problems and not permissive:
            index, (status, message, name) = next(iter(problems.items()))
            return error(status, f"emails[{index}]: {message}", name)
        data = [{"id": self._record(e, key, batch=True)} for i, e in enumerate(emails) if i not in problems]
        answer: dict[str, Any] = {"data": data}
        if permissive:
            answer["errors"] = [{"index": i, "message": p[1]} for i, p in problems.items()]
        return 200, answer, {}

    def _problem(self, email: Any) -> Problem | None:
        return problem(email, self.domains if self._check_senders else None)

    def _record(self, email: dict, key: str | None, batch: bool) -> str:
        sent = SentEmail(
            id=str(uuid.uuid4()), sender=email["from"], to=recipients(email), subject=email["subject"],
            html=email.get("html"), text=email.get("text"), headers=dict(email.get("headers") or {}),
            tags=list(email.get("tags") or []), idempotency_key=key, batch=batch,
        )
        self._sent.append(sent)
        self._stats["accepted"] += 1
        return sent.id


def _header(value: float | str) -> str:
    return value if isinstance(value, str) else f"{value:g}"


def main(argv: list[str] | None = None) -> None:
    """Run the stand-in in the foreground until SIGTERM or Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port, printed on stdout")
    parser.add_argument("--api-key", default=None, help="the only key accepted (default: any key)")
    parser.add_argument("--rate-limit", type=float, default=2.0, help="requests per second; 0 means no limit")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--domain", action="append", default=[], help="name[:status]; enables sender checks")
    args = parser.parse_args(argv)
    domains = dict((d.split(":", 1) + ["verified"])[:2] for d in args.domain) or None
    api = ResendStandIn(args.api_key, args.rate_limit, args.latency_ms, domains, args.host, args.port)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"listening on {api.url}", flush=True)
    try:
        api.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        api.stop()


if __name__ == "__main__":
    main()
