"""Status enums and their allowed transitions, in one place."""

from enum import StrEnum


class SendStatus(StrEnum):
    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


class EnrollmentStatus(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    CANCELLED = "cancelled"


class SignupOutcome(StrEnum):
    ENROLLED = "enrolled"
    UPDATED = "updated"
    SKIPPED = "skipped"
    REFUSED = "refused"


class ActionStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


SEND_TRANSITIONS: dict[SendStatus, frozenset[SendStatus]] = {
    SendStatus.SCHEDULED: frozenset({SendStatus.SENDING, SendStatus.CANCELLED, SendStatus.SKIPPED}),
    # A claimed send goes back to scheduled only through a transient failure's backoff or a batch
    # given back unsent; it is cancelled when the claim finds its contact or sequence stopped.
    SendStatus.SENDING: frozenset({SendStatus.SENT, SendStatus.FAILED, SendStatus.SCHEDULED, SendStatus.CANCELLED}),
    SendStatus.SENT: frozenset(),
    # A failed send can be retried from the dashboard.
    SendStatus.FAILED: frozenset({SendStatus.SCHEDULED}),
    SendStatus.CANCELLED: frozenset(),
    SendStatus.SKIPPED: frozenset(),
}

# Sequences stopped for good: a signup resubmitted later leaves them as they are.
STOPPED_ENROLLMENT = (EnrollmentStatus.UNSUBSCRIBED, EnrollmentStatus.BOUNCED, EnrollmentStatus.CANCELLED)

# Sends a stop (unsubscribe, bounce, cancel) may still catch: anything not yet claimed.
STOPPABLE = (SendStatus.SCHEDULED,)
FINISHED = (SendStatus.SENT, SendStatus.SKIPPED, SendStatus.FAILED, SendStatus.CANCELLED)


def can_transition(current: SendStatus, new: SendStatus) -> bool:
    """Whether the state machine allows it; the dispatch and tally tests check every change the code makes."""
    return new in SEND_TRANSITIONS[current]
