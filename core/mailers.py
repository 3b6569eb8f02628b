"""The Mailer port: what the dispatcher needs from an email provider, and the dry-run adapter."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class OutgoingEmail:
    """One rendered email, ready for a provider."""

    send_id: str
    to: str
    subject: str
    html: str
    text: str
    headers: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Delivery:
    """The provider's answer for one email of a call: an id, or a permanent per-recipient error."""

    send_id: str
    provider_id: str | None = None
    error: str | None = None

    @property
    def accepted(self) -> bool:
        return self.provider_id is not None


class Mailer(Protocol):
    """Sends emails. Raises TransientMailerError, PermanentMailerError or AccountMailerError."""

    name: str

    def send(self, emails: Sequence[OutgoingEmail], idempotency_key: str) -> list[Delivery]:
        """Send one email alone or up to 100 as a batch, replay-safe under `idempotency_key`."""
        ...

    def check(self) -> str:
        """Check the connection and credentials; return a one-line status or raise MailerError."""
        ...


class DryRunMailer:
    """Used when no RESEND_API_KEY is set: renders everything, delivers nothing, records success."""

    name = "dry-run"

    def send(self, emails: Sequence[OutgoingEmail], idempotency_key: str) -> list[Delivery]:
        return [Delivery(e.send_id, provider_id=f"dry-run-{uuid.uuid4()}") for e in emails]

    def check(self) -> str:
        return "dry run: no RESEND_API_KEY is set, so emails are rendered and recorded but never delivered"
