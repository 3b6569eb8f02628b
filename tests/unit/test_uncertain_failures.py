"""Which recorded failures may have been delivered anyway: the Sends page warns before retrying those."""

from core import dispatch
from core.errors import PermanentMailerError
from core.outcomes import may_have_been_delivered


def test_the_reasons_the_worker_writes_for_an_unknown_outcome_are_recognised():
    assert may_have_been_delivered(dispatch._EXPIRED_KEY)
    assert may_have_been_delivered("gave up after 9 attempts over 6.0 h: Resend 503 application_error: down")
    replay_refused = PermanentMailerError("outcome unknown: Resend already took this batch under its key", 409)
    assert dispatch._reason(replay_refused).startswith("409 outcome unknown")  # as it is recorded
    assert may_have_been_delivered(dispatch._reason(replay_refused))


def test_a_refusal_or_a_stop_is_not_mistaken_for_one():
    for reason in (None, "", "422 validation_error: Invalid `to` field", "cancelled: the contact or sequence was stopped",
                   "Resend 401 invalid_api_key: API key is invalid"):
        assert not may_have_been_delivered(reason)
