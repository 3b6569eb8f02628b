"""The dispatcher: claim due sends, render them, hand them to the Mailer, record every outcome."""

import logging
import threading
import time
from dataclasses import dataclass, replace
from datetime import timedelta

from core import actions, alerts, claims, db, outcomes, provider_events, repo, switches
from core.bootstrap import Services
from core.claims import ClaimedBatch
from core.errors import AccountMailerError, MailerError, PermanentMailerError, TransientMailerError
from core.mailers import Delivery
from core.outcomes import Finished
from core.sequencing import backoff

log = logging.getLogger(__name__)


# Resend recognises a replayed idempotency key for 24 hours. A batch whose key was first used
# longer ago than this is not replayed under it: if an earlier attempt got through, Resend might
# send it a second time. When every attempt was refused outright, nothing went, and the batch
# goes under a fresh key instead.
KEY_LIFETIME = timedelta(hours=23)


@dataclass(frozen=True)
class DispatchPolicy:
    lease: timedelta = timedelta(minutes=2)
    batch_size: int = 100
    # How long a batch is retried, same members and same key, through a provider outage (timeouts,
    # 5xx: the emails may or may not have gone) before its sends are given up as failed, counted from
    # the first such failure. Hours, so an outage delays emails rather than losing them; well inside
    # KEY_LIFETIME, so every replay is recognised. Refusals (a rate limit, a bad key) do not count:
    # nothing was sent, and the breaker or the provider's pace holds the emails until they can go.
    retry_window: timedelta = timedelta(hours=6)
    breaker_threshold: int = 3
    # Two lanes overlap one batch's rendering and recording with the other's provider call,
    # which is what it takes to keep the account's request rate busy.
    lanes: int = 2
    # A rate limit asking for a longer wait than this (a daily quota: hours) ends the pass, so it does
    # not claim batch after batch only to be refused; the refused batch's backoff waits it out.
    longest_wait: timedelta = timedelta(seconds=10)


class Dispatcher:
    def __init__(self, services: Services, worker_id: str, policy: DispatchPolicy = DispatchPolicy()):
        self.services = services
        self.worker_id = worker_id
        self.policy = policy
        # Set when this worker trips the breaker, so its other lane stops at once instead of
        # sending what it already claimed; cleared once the switch reads "resumed".
        self._halted = threading.Event()
        # One provider call at a time per worker: the rate limit spaces calls anyway, and lanes
        # overlap everything else. It also lets a tripped breaker stop the very next call.
        self._call_lock = threading.Lock()
        # Set when the provider asks for a longer wait than the policy's longest_wait: both lanes then
        # claim no more this pass. Cleared as each pass starts.
        self._told_to_wait = threading.Event()
        self._requests = actions.ActionRunner(services, worker_id)

    def run_until_idle(self, budget_seconds: float = 0.9) -> None:
        """The interval job: dispatch, then stay for new enrollments until the next tick is near."""
        deadline = time.monotonic() + budget_seconds
        while True:
            self.services.wake.clear()
            self.run_pass()
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.services.wake.wait(remaining) or self.services.stopping.is_set():
                return

    def run_pass(self) -> int:
        """Send everything due now, a batch at a time in each lane; return how many emails were handled.

        What the marketer has asked of sequences (stops, skips, resends, retries) is carried out first, in order.
        """
        self._requests.run_all_pending(actions.SEQUENCE_CHANGES)
        self._told_to_wait.clear()
        if self.policy.lanes <= 1:
            return self._drain()
        counts: list[int] = []
        errors: list[Exception] = []

        def lane() -> None:
            # Raised here, an error would end only this thread, printed as a bare traceback: the job
            # would count the pass as done (/health not told, `--once` exiting 0) with a batch left leased.
            try:
                counts.append(self._drain())
            except Exception as exc:
                errors.append(exc)

        extra = [threading.Thread(target=lane, name=f"dispatch-lane-{i}") for i in range(1, self.policy.lanes)]
        for thread in extra:
            thread.start()
        try:
            counts.append(self._drain())
        finally:
            for thread in extra:
                thread.join()
        if errors:
            raise errors[0]
        return sum(counts)

    def _drain(self) -> int:
        handled = 0
        # A stopping worker claims nothing more: what is due waits for the next start (or another worker).
        while (not self.services.stopping.is_set() and not self._told_to_wait.is_set()
               and (batch := self._claim()) is not None):
            if not self._deliver(batch):
                break
            handled += len(batch.members)
        return handled

    def _claim(self) -> ClaimedBatch | None:
        now = self.services.clock()
        with db.read_transaction(self.services.engine) as conn:
            paused = switches.read(conn).paused
            if not paused:
                self._halted.clear()
            if paused or not claims.work_waiting(conn, now):
                return None
        with db.write_transaction(self.services.engine) as conn:
            if switches.read(conn).paused:  # a pause that landed since the read still wins
                return None
            return (claims.reclaim_expired(conn, self.worker_id, now, self.policy.lease)
                    or claims.claim_due(conn, self.worker_id, now, self.policy.lease, self.policy.batch_size))

    def _deliver(self, batch: ClaimedBatch) -> bool:
        """Render, send and record one batch; False when the breaker stopped it before the call."""
        metrics, now = self.services.metrics, self.services.clock()
        for member in batch.members:
            metrics.dispatch_lateness.observe(max(0.0, (now - member.due_at).total_seconds()))
        if batch.attempts > 1 and now - batch.created_at >= KEY_LIFETIME:
            if batch.may_have_been_sent:
                self._record(batch, [Delivery(m.id, error=_EXPIRED_KEY) for m in batch.members])
                return True
            batch = self._renew_key(batch, now)
            if batch is None:
                return True  # another worker took it over meanwhile
        emails, render_failures = [], []
        for member in batch.members:
            try:
                # Rendered as of the key's first use, so every replay under that key carries the same content.
                emails.append(self.services.composer.compose(member, at=batch.created_at))
            except Exception as exc:  # a broken template fails its own send, visibly, not the batch
                log.exception("render failed", extra={"action": "render", "send": member.id, "step": member.step})
                render_failures.append(Delivery(member.id, error=f"render failed: {exc}"))
        if not emails:
            self._record(batch, render_failures)
            return True
        with self._call_lock:
            if self._halted.is_set():  # the other lane tripped the breaker: this batch does not go out now
                self._hold(batch)
                return False
            deliveries, error = self._call(emails, batch.idempotency_key)
            self._count_account_error(error)
        if isinstance(error, (TransientMailerError, AccountMailerError)):
            # An account error (bad key, unverified domain) is the operator's to fix, not the lead's
            # fault: the batch waits with its key while the breaker pauses sending.
            self._retry_later(batch, error)
            if (getattr(error, "retry_after", None) or 0) > self.policy.longest_wait.total_seconds():
                self._told_to_wait.set()
        elif error is not None:
            failures = [Delivery(e.send_id, error=_reason(error)) for e in emails]
            self._record(batch, failures + render_failures)
        else:
            self._record(batch, deliveries + render_failures, call_went_through=True)
        return True

    def _call(self, emails, key: str) -> tuple[list[Delivery], MailerError | None]:
        """One provider call; errors come back as values, translated to retry-later or final."""
        metrics = self.services.metrics
        try:
            with metrics.provider_latency.time():
                return self.services.mailer.send(emails, key), None
        except TransientMailerError as exc:
            if exc.status == 429:
                metrics.provider_rate_limited.inc()
            return [], exc
        except MailerError as exc:
            return [], exc if isinstance(exc, PermanentMailerError) else TransientMailerError(str(exc))
        except Exception as exc:  # an adapter bug must not lose the batch: back off and replay
            log.exception("mailer raised unexpectedly", extra={"action": "send", "key": key})
            return [], TransientMailerError(f"unexpected: {exc}")

    def _count_account_error(self, error: MailerError | None) -> str | None:
        """Count an account error (under the call lock); the breaker's reason once it trips.

        The count is kept in the database, so errors in a row add up across lanes, workers and
        `--once` runs; a call that goes through clears it as its outcomes are recorded.
        """
        if not isinstance(error, AccountMailerError):
            return None
        now = self.services.clock()
        # The pause is committed before the halt is raised: a lane that then reads "not paused"
        # read it earlier, so it can never clear the halt this trip just set.
        with db.write_transaction(self.services.engine) as conn:
            errors = switches.count_account_error(conn, actor=self.worker_id, now=now)
            if errors < self.policy.breaker_threshold:
                return None
            reason = f"circuit breaker: {errors} consecutive provider account errors; last: {_reason(error)}"
            switches.clear_account_errors(conn, actor=self.worker_id, now=now)
            switches.set_paused(conn, True, actor=self.worker_id, now=now, reason=reason)
            alerts.queue_ops_alert(conn, self.services.settings, "circuit_breaker", reason, now)
        self._halted.set()
        log.error(reason, extra={"action": "circuit_breaker"})
        return reason

    def _hold(self, batch: ClaimedBatch) -> None:
        """Give a batch back without calling the provider. A fresh one returns to the queue as it was;
        a replay keeps its members and key, since an earlier attempt may have reached the provider."""
        with db.write_transaction(self.services.engine) as conn:
            if batch.attempts == 1:
                claims.release_unsent(conn, batch.id, self.worker_id)
            else:
                outcomes.mark_backoff(conn, batch.id, "held: sending was paused by the circuit breaker",
                                      self.worker_id, self.services.clock(), timedelta(0), refused=True)

    def _retry_later(self, batch: ClaimedBatch, exc: MailerError) -> None:
        now = self.services.clock()
        reason = _reason(exc)
        with db.write_transaction(self.services.engine) as conn:
            uncertain_since = None if exc.refused else batch.uncertain_since or now
            if uncertain_since is not None and now - uncertain_since >= self.policy.retry_window:
                hours = (now - uncertain_since).total_seconds() / 3600
                failures = [Delivery(m.id, error=f"gave up after {batch.attempts} attempts over {hours:.1f} h: "
                                                 f"{reason}") for m in batch.members]
                self._write_outcomes(conn, batch, failures, now)
                return
            delay = backoff(batch.attempts, getattr(exc, "retry_after", None))
            if uncertain_since is not None:
                # An outage's retry-after (a 503's "come back tomorrow") never carries the batch past its
                # window, nor so past its key's life: it is tried once more as the window ends, not given
                # up as "outcome unknown" without another attempt.
                delay = min(delay, uncertain_since + self.policy.retry_window - now)
            last_replay = batch.created_at + KEY_LIFETIME - timedelta(hours=1)
            if (batch.may_have_been_sent or uncertain_since is not None) and now < last_replay:
                # Nor does a refusal's (a daily quota's day): such a batch can be replayed only while its key
                # lives, so it is tried once more an hour before that ends, not given up as "outcome unknown"
                # untried. (Refused again after that, it waits out its backoff as before.)
                delay = min(delay, last_replay - now)
            held = outcomes.mark_backoff(conn, batch.id, reason, self.worker_id, now, delay, refused=exc.refused,
                                         uncertain_since=uncertain_since)
            if not held:  # the lease ran out during the call and another worker has the batch: its retry is theirs
                log.info("provider call failed after this worker's lease ran out; the batch is another's: %s",
                         reason, extra={"action": "send", "batch": batch.id})
                return
            repo.insert_events(conn, [repo.event_row(
                now, self.worker_id, "send_retry_scheduled", contact_id=m.contact_id, enrollment_id=m.enrollment_id,
                send_id=m.id, detail={"error": reason, "retry_in_seconds": delay.total_seconds(),
                                      "attempt": batch.attempts}) for m in batch.members])
        log.warning("provider call failed, retrying in %ss: %s", delay.total_seconds(), reason,
                    extra={"action": "send", "batch": batch.id, "size": len(batch.members)})

    def _renew_key(self, batch: ClaimedBatch, now) -> ClaimedBatch | None:
        """Every attempt was refused, so nothing was sent: the batch goes under a fresh key, dated now."""
        with db.write_transaction(self.services.engine) as conn:
            key = claims.renew_key(conn, batch.id, self.worker_id, now)
        if key is None:
            return None
        log.info("batch refused on every attempt so far; its key expired, so it goes under a fresh one",
                 extra={"action": "send", "batch": batch.id, "size": len(batch.members)})
        return replace(batch, idempotency_key=key, created_at=now)

    def _record(self, batch: ClaimedBatch, deliveries: list[Delivery], *, call_went_through: bool = False) -> None:
        now = self.services.clock()
        with db.write_transaction(self.services.engine) as conn:
            self._write_outcomes(conn, batch, deliveries, now)
            if call_went_through:  # the account works: the breaker's count starts again
                switches.clear_account_errors(conn, actor=self.worker_id, now=now)

    def _write_outcomes(self, conn, batch: ClaimedBatch, deliveries: list[Delivery], now) -> None:
        members = {m.id: m for m in batch.members}
        accepted = {d.send_id: d.provider_id for d in deliveries if d.accepted}
        # Before any send row is written: a webhook event for these ids waits here, not on a row we hold.
        provider_events.lock_against_recording(conn, [pid for pid in accepted.values() if pid])
        sent = outcomes.mark_sent(conn, accepted, self.worker_id, now)
        failed = outcomes.mark_failed(conn, {d.send_id: d.error or "unknown error" for d in deliveries
                                             if not d.accepted}, self.worker_id, now)
        recorded = [(d, members[d.send_id]) for d in deliveries if d.send_id in sent | failed]
        self.services.metrics.send_outcomes.labels("sent").inc(len(sent))
        self.services.metrics.send_outcomes.labels("failed").inc(len(failed))
        outcomes.release_next_steps(conn, [Finished(m.enrollment_id, m.campaign, m.timing) for _, m in recorded], now)
        repo.insert_events(conn, [
            repo.event_row(now, self.worker_id, "send_sent" if d.accepted else "send_failed",
                           contact_id=m.contact_id, enrollment_id=m.enrollment_id, send_id=m.id,
                           detail={"step": m.step, "provider_id": d.provider_id} if d.accepted
                           else {"step": m.step, "error": d.error})
            for d, m in recorded])
        # Last, so a bounce or complaint that came early also stops the step just released.
        provider_events.apply_early_events(conn, [accepted[send_id] for send_id in sent if accepted[send_id]], now)
        if self.services.settings.notion_configured:
            repo.insert_outbox(conn, [repo.outbox_row("notion", m.contact_id, {"enrollment_id": m.enrollment_id}, now)
                                      for m in {m.enrollment_id: m for _, m in recorded}.values()])


_EXPIRED_KEY = ("outcome unknown: first handed to the provider over 23 hours ago, past the 24 hours in which "
                "Resend recognises a replay; not sent again, so it cannot arrive twice. Check Resend's log before "
                "retrying")


def _reason(exc: Exception) -> str:
    """The error as recorded, led by its HTTP status unless the message already names it ("Resend 429 …")."""
    status, message = getattr(exc, "status", None), str(exc)
    return f"{status} {message}" if status and str(status) not in message.split(":")[0] else message
