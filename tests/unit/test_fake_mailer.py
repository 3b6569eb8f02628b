"""FakeMailer is what the dispatcher tests trust to behave like Resend, so it is tested itself."""

import pytest

from core.errors import AccountMailerError, MailerError, TransientMailerError
from core.mailers import OutgoingEmail
from core.testing import FakeMailer


def email(send_id: str, to: str | None = None) -> OutgoingEmail:
    return OutgoingEmail(send_id=send_id, to=to or f"{send_id}@example.com", subject=f"Subject {send_id}",
                         html=f"<p>{send_id}</p>", text=send_id, tags={"step": "1"})


def test_a_replay_under_the_same_key_returns_the_same_ids_and_delivers_nothing_twice():
    mailer = FakeMailer()
    batch = [email("a"), email("b")]

    first = mailer.send(batch, "key-1")
    replay = mailer.send(batch, "key-1")

    assert replay == first
    assert all(d.accepted for d in first)
    assert [r.email.send_id for r in mailer.sent] == ["a", "b"]
    assert [r.idempotency_key for r in mailer.sent] == ["key-1", "key-1"]
    assert mailer.calls == [("key-1", ["a", "b"]), ("key-1", ["a", "b"])]


def test_a_different_key_is_a_different_request_and_delivers_again():
    mailer = FakeMailer()

    first = mailer.send([email("a")], "key-1")
    second = mailer.send([email("a")], "key-2")

    assert first[0].provider_id != second[0].provider_id
    assert len(mailer.sent_to("a@example.com")) == 2


def test_a_different_member_list_under_a_used_key_is_refused_and_sends_nothing():
    mailer = FakeMailer()
    mailer.send([email("a"), email("b")], "key-1")

    with pytest.raises(MailerError, match="different request"):
        mailer.send([email("a"), email("c")], "key-1")
    with pytest.raises(MailerError, match="different request"):
        mailer.send([email("b"), email("a")], "key-1")

    assert [r.email.send_id for r in mailer.sent] == ["a", "b"]


def test_a_rejected_address_fails_only_its_own_email_with_the_providers_message():
    mailer = FakeMailer()
    mailer.reject("bad@example.com", "Invalid `to` field.")

    deliveries = mailer.send([email("a"), email("b", "bad@example.com"), email("c")], "key-1")

    assert [d.accepted for d in deliveries] == [True, False, True]
    assert deliveries[1].error == "Invalid `to` field." and deliveries[1].provider_id is None
    assert [d.send_id for d in deliveries] == ["a", "b", "c"]
    assert [r.email.to for r in mailer.sent] == ["a@example.com", "c@example.com"]
    assert mailer.sent_to("bad@example.com") == []


def test_scripted_failures_are_raised_once_each_in_the_order_given():
    mailer = FakeMailer()
    transient = TransientMailerError("429 slow down", retry_after=3)
    account = AccountMailerError("401 bad key", status=401)
    mailer.fail_next(transient, account)

    with pytest.raises(TransientMailerError) as first:
        mailer.send([email("a")], "key-1")
    with pytest.raises(AccountMailerError) as second:
        mailer.send([email("a")], "key-1")
    delivered = mailer.send([email("a")], "key-1")

    assert first.value is transient and first.value.retry_after == 3
    assert second.value is account
    assert delivered[0].accepted
    assert len(mailer.sent) == 1
    assert len(mailer.calls) == 3


def test_a_failed_call_does_not_burn_the_key_so_the_replay_delivers():
    mailer = FakeMailer()
    mailer.fail_next(TransientMailerError("503"))

    with pytest.raises(TransientMailerError):
        mailer.send([email("a")], "key-1")

    assert mailer.sent == []
    assert mailer.send([email("a")], "key-1")[0].accepted
    assert len(mailer.sent) == 1


@pytest.mark.parametrize("count", [0, 101])
def test_a_call_carries_one_to_a_hundred_emails(count):
    mailer = FakeMailer()
    with pytest.raises(ValueError):
        mailer.send([email(str(i)) for i in range(count)], "key-1")
    assert mailer.sent == []


def test_check_always_answers_and_names_the_mailer_once():
    mailer = FakeMailer()
    assert mailer.check() == "always reachable" and mailer.name == "fake"  # the action prefixes the name
