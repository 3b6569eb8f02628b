"""Requests from the dashboard or CLI, written as rows and carried out by the worker.

The page never calls Resend: it records what the marketer asked for, with who asked,
and the worker's action job performs it and writes the outcome back.
"""

import json
import logging
import time
from datetime import datetime, timedelta

import sqlalchemy as sa

from core import controls, db, repo
from core.bootstrap import Services
from core.campaign import CHRISTMAS_2025
from core.emails import render_step, sample_context
from core.errors import MailerError, NurtureError
from core.ids import new_id
from core.mailers import OutgoingEmail
from core.statuses import ActionStatus
from core.tables import action_t, send_t
from core.unsubscribe import unsubscribe_headers, unsubscribe_url_of_test_emails

log = logging.getLogger(__name__)

KINDS = ("resend_step", "skip_step", "cancel_sequence", "unsubscribe", "retry_send", "send_test",
         "check_connection")
# Requests that call the email provider and write nothing but their own result.
PROVIDER_CALLS = ("send_test", "check_connection")
# Requests that change sequences: every other kind, so a new one cannot slip past. The dispatcher carries
# these out itself before every pass, in the order they were asked: a stop (unsubscribe, cancel, skip) then
# never waits behind a pass that would still send what it stops, and never overtakes an earlier request
# either (a resend, then a skip of it). A skip left to the action job, which runs beside dispatch, lost to
# a step falling due as it arrived (a worker starting up after downtime), and the email went.
SEQUENCE_CHANGES = tuple(kind for kind in KINDS if kind not in PROVIDER_CALLS)
# A test email asked for while no worker ran would reach the marketer whenever one next started, days later
# perhaps, long after anyone watched for it; past this age it is not sent, and its request says so.
TEST_EMAIL_EXPIRY = timedelta(hours=1)


def _claim(conn: sa.Connection, action_id: str, now: datetime) -> bool:
    """Mark a pending action done before carrying it out; False if another worker took it first."""
    return bool(conn.execute(action_t.update().where(
        action_t.c.id == action_id, action_t.c.status == ActionStatus.PENDING
    ).values(status=ActionStatus.DONE, done_at=now)).rowcount)


def request_action(conn: sa.Connection, kind: str, payload: dict, *, requested_by: str, now: datetime) -> str:
    """Queue an action for the worker and record the request in the audit trail."""
    if kind not in KINDS:
        raise NurtureError(f"unknown action {kind!r}")
    action_id = new_id()
    conn.execute(action_t.insert().values(id=action_id, kind=kind, payload=json.dumps(payload),
                                          requested_by=requested_by, requested_at=now, status=ActionStatus.PENDING))
    repo.insert_events(conn, [repo.event_row(now, requested_by, f"requested_{kind}",
                                             contact_id=payload.get("contact_id"),
                                             enrollment_id=payload.get("enrollment_id"),
                                             send_id=payload.get("send_id"), detail=payload)])
    return action_id


def wait_for(services: Services, action_id: str, *, timeout: float, poll: float = 0.5) -> tuple[str, str] | None:
    """Wait until the worker has carried out an action; (status, result), or None on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.read_transaction(services.engine) as conn:
            row = conn.execute(sa.select(action_t.c.status, action_t.c.result)
                               .where(action_t.c.id == action_id)).one()
        if row.status != ActionStatus.PENDING:
            return row.status, row.result or ""
        time.sleep(poll)
    return None


class ActionRunner:
    def __init__(self, services: Services, worker_id: str):
        self.services = services
        self.worker_id = worker_id

    def run_all_pending(self, kinds: tuple[str, ...], page: int = 50) -> None:
        """Carry out every pending action of these kinds, a page at a time, in the order asked: a stop
        asked after a page of retries is still carried out before the pass that would send what it stops."""
        while self.run_pending(page, kinds=kinds) == page:
            pass

    def run_pending(self, limit: int = 50, *, kinds: tuple[str, ...] = KINDS) -> int:
        """Carry out pending actions (of these kinds) in the order they were requested."""
        with db.read_transaction(self.services.engine) as conn:
            pending = conn.execute(sa.select(action_t).where(action_t.c.status == ActionStatus.PENDING,
                                                             action_t.c.kind.in_(kinds))
                                   .order_by(action_t.c.requested_at).limit(limit)).all()
        for action in pending:
            self._run(action)
        return len(pending)

    def _run(self, action) -> None:
        payload = json.loads(action.payload)
        actor = action.requested_by
        now = self.services.clock()
        try:
            if action.kind in PROVIDER_CALLS:
                # Outside any transaction: on SQLite a write transaction held across a call to Resend
                # would keep every signup waiting for the lock as long as the call takes.
                with db.write_transaction(self.services.engine) as conn:
                    if not _claim(conn, action.id, now):
                        return
                _refuse_if_stale(action, now)
                result = self._call_provider(action.kind, payload)
                with db.write_transaction(self.services.engine) as conn:
                    conn.execute(action_t.update().where(action_t.c.id == action.id).values(result=result))
            else:
                with db.write_transaction(self.services.engine) as conn:
                    if not _claim(conn, action.id, now):
                        return
                    result = self._perform(conn, action.kind, payload, actor, now)
                    conn.execute(action_t.update().where(action_t.c.id == action.id).values(result=result))
        except Exception as exc:  # a refused or broken request fails visibly, and never blocks those after it
            if db.storage_unavailable(exc):
                raise  # the database, not the request, is the trouble: the action stays pending for the next run
            reason = str(exc)
            if not isinstance(exc, (NurtureError, ValueError, KeyError)):
                log.exception("action %s raised unexpectedly", action.kind, extra={"action": action.kind})
                reason = f"unexpected error ({type(exc).__name__}); the worker's log has the details"
            with db.write_transaction(self.services.engine) as conn:
                conn.execute(action_t.update().where(action_t.c.id == action.id).values(
                    status=ActionStatus.FAILED, result=reason, done_at=now))
                repo.insert_events(conn, [repo.event_row(now, self.worker_id, f"{action.kind}_failed",
                                                         contact_id=payload.get("contact_id"),
                                                         detail={"error": reason})])
            log.warning("action %s failed: %s", action.kind, reason, extra={"action": action.kind})
        if action.kind in ("resend_step", "retry_send", "skip_step"):
            self.services.wake.set()

    def _perform(self, conn, kind: str, p: dict, actor: str, now: datetime) -> str:
        if kind == "resend_step":
            seen = p.get("generation")  # absent from requests queued before it was sent along
            send_id = controls.resend_step(conn, p["enrollment_id"], int(p["step"]), actor=actor, now=now,
                                           seen_generation=None if seen is None else int(seen))
            return f"queued send {send_id}"
        if kind == "skip_step":
            step = int(p["step"])
            if controls.skip_step(conn, p["enrollment_id"], step, actor=actor, now=now):
                return "skipped"
            # A skip that changed nothing is a refusal unless the step stands skipped: reported "done",
            # it hid from the marketer that the email they meant to hold back had gone.
            refusal = controls.why_not_skipped(conn, p["enrollment_id"], step)
            if refusal is None:
                return "already skipped"
            raise NurtureError(f"step {step} was not skipped: {refusal}")
        if kind == "cancel_sequence":
            cancelled = controls.cancel_sequence(conn, p["enrollment_id"], actor=actor, now=now)
            if cancelled is None:
                return "nothing to cancel: the sequence had already stopped"
            still_going = _still_going(conn, send_t.c.enrollment_id == p["enrollment_id"])
            return f"cancelled {cancelled} sends{still_going}"
        if kind == "unsubscribe":
            done = controls.unsubscribe_contact(conn, p["contact_id"], actor=actor, now=now,
                                                detail={"via": "dashboard"})
            if not done:
                return "already unsubscribed"
            return "unsubscribed" + _still_going(conn, send_t.c.contact_id == p["contact_id"])
        if kind == "retry_send":
            done = controls.retry_send(conn, p["send_id"], actor=actor, now=now)
            return "queued again" if done else "not failed any more; nothing to retry"
        raise NurtureError(f"unknown action {kind!r}")

    def _call_provider(self, kind: str, p: dict) -> str:
        return self._send_test(p) if kind == "send_test" else self._check_connection()

    def _send_test(self, p: dict) -> str:
        step = CHRISTMAS_2025.step(int(p["step"]))
        season_over = CHRISTMAS_2025.season_over(self.services.clock())  # the copy as it would go out today
        settings = self.services.settings
        # Headers and footer as a real email has them, so the test shows what mail clients will offer.
        url = unsubscribe_url_of_test_emails(settings.public_base_url)
        rendered = render_step(step, sample_context(p["segment"], season_over=season_over),
                               unsubscribe_url=url, postal_address=settings.postal_address)
        email = OutgoingEmail(send_id="test", to=p["to"], subject=f"[TEST] {rendered.subject}", html=rendered.html,
                              text=rendered.text, headers=unsubscribe_headers(url),
                              tags={"campaign": "test", "step": str(step.number), "segment": p["segment"]})
        try:
            delivery = self.services.mailer.send([email], f"nurture-test-{p['request_id']}")[0]
        except MailerError as exc:
            raise NurtureError(f"test email not sent: {exc}") from exc
        if not delivery.accepted:
            raise NurtureError(f"test email refused: {delivery.error}")
        return f"sent step {step.number} ({p['segment']}) to {p['to']} via {self.services.mailer.name}: {delivery.provider_id}"

    def _check_connection(self) -> str:
        try:
            return f"{self.services.mailer.name}: {self.services.mailer.check()}"
        except MailerError as exc:
            raise NurtureError(f"{self.services.mailer.name}: {exc}") from exc


def _refuse_if_stale(action, now: datetime) -> None:
    waited = now - action.requested_at
    if action.kind == "send_test" and waited > TEST_EMAIL_EXPIRY:
        raise NurtureError(f"test email not sent: it was asked for {int(waited.total_seconds() // 60)} minutes before "
                           "a worker could carry it out, so it would have arrived unexpected; ask for it again if it "
                           "is still wanted")


def _still_going(conn: sa.Connection, where) -> str:
    """What a stop could not catch. Reported "done" alone, a cancel or unsubscribe was followed by an
    email the marketer had been told was stopped."""
    clause = controls.still_going_clause(controls.steps_still_going(conn, where))
    return f"; {clause}" if clause else ""
