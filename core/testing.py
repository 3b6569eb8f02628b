"""In-memory stand-ins for the outside services, shipped beside the ports they fake (and tested)."""

import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from core.errors import MailerError
from core.mailers import Delivery, OutgoingEmail


@dataclass(frozen=True)
class SentRecord:
    email: OutgoingEmail
    provider_id: str
    idempotency_key: str


class FakeMailer:
    """A Mailer that behaves like Resend where it matters: idempotency keys replay, bad addresses fail alone.

    Script failures with `fail_next(exc)`; reject addresses with `reject(address, message)`.
    """

    name = "fake"

    def __init__(self):
        self.sent: list[SentRecord] = []
        self.calls: list[tuple[str, list[str]]] = []
        self._replies: dict[str, tuple[list[str], list[Delivery]]] = {}
        self._failures: list[MailerError] = []
        self._rejected: dict[str, str] = {}
        self._lock = threading.Lock()

    def fail_next(self, *errors: MailerError) -> None:
        with self._lock:
            self._failures.extend(errors)

    def stop_failing(self) -> None:
        """Drop the failures still queued: the provider works again."""
        with self._lock:
            self._failures.clear()

    def reject(self, address: str, message: str = "invalid `to` address") -> None:
        self._rejected[address] = message

    def send(self, emails: Sequence[OutgoingEmail], idempotency_key: str) -> list[Delivery]:
        if not 1 <= len(emails) <= 100:
            raise ValueError("a provider call carries 1 to 100 emails")
        with self._lock:
            self.calls.append((idempotency_key, [e.send_id for e in emails]))
            if self._failures:
                raise self._failures.pop(0)
            members = [e.send_id for e in emails]
            if idempotency_key in self._replies:
                known_members, deliveries = self._replies[idempotency_key]
                if known_members != members:
                    raise MailerError("idempotency key reused with a different request")
                return deliveries
            deliveries = [self._deliver(e, idempotency_key) for e in emails]
            self._replies[idempotency_key] = (members, deliveries)
            return deliveries

    def _deliver(self, email: OutgoingEmail, key: str) -> Delivery:
        if email.to in self._rejected:
            return Delivery(email.send_id, error=self._rejected[email.to])
        provider_id = f"fake-{uuid.uuid4()}"
        self.sent.append(SentRecord(email, provider_id, key))
        return Delivery(email.send_id, provider_id=provider_id)

    def check(self) -> str:
        return "always reachable"

    def sent_to(self, address: str) -> list[OutgoingEmail]:
        return [r.email for r in self.sent if r.email.to == address]
