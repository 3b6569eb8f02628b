"""A seeded, randomized, model-based test of the sequencing engine (DESIGN §4, invariants 3 to 5).

Random histories drive the real services on SQLite and PostgreSQL: signups (new, repeated, resubmitted
with new counts), time passing, dispatch passes by two workers, provider faults, workers killed between
their claim and their record, pause and test mode, the dashboard's sequence requests, Resend's deliveries,
opens, clicks, bounces and complaints, erasure. After every operation, what the provider accepted is held
against the promises: each email once, in order and spaced, nothing after a stop or while paused, every failure
with its reason; and every count the tally serves (migration 0005) equals a recount of the rows.
At the end, with the faults gone and time enough, every sequence is finished or stopped.

A failure names its seed and the operations so far; `History(...).run(ops)` replays a list of them.
"""

import json
import os
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from core import db, erasure, provider_events, switches
from core.actions import request_action
from core.bootstrap import build_services
from core.campaign import CHRISTMAS_2025, Timing
from core.controls import unsubscribe_contact
from core.dispatch import Dispatcher, DispatchPolicy
from core.errors import AccountMailerError, MailerError, PermanentMailerError, TransientMailerError
from core.intake import enroll_now
from core.outcomes import may_have_been_delivered
from core.sequencing import planned_gap
from core.statuses import SignupOutcome
from core.tables import batch_t, contact_t, enrollment_t, event_t, send_t
from core.testing import FakeMailer
from tests.support import SendStatusLog, counted, signup_request, tallied

SEEDS = int(os.environ.get("RANDOM_HISTORY_SEEDS", "3"))
FIRST_SEED = int(os.environ.get("RANDOM_HISTORY_FIRST_SEED", "0"))  # to explore seeds beyond those already run
OPS_PER_SEED = int(os.environ.get("RANDOM_HISTORY_OPS", "200"))
KEY_MEMORY = timedelta(hours=24)  # how long Resend recognises an idempotency key
PEOPLE = 10
WEIGHTS = {"signup": 3, "advance": 5, "dispatch": 6, "fault": 2, "crash": 1, "pause": 0.4, "resume": 1.2,
           "test_mode": 0.5, "request": 2.5, "unsubscribe_link": 0.1, "event": 1.5, "forget": 0.1}
# Each fault strikes the next provider call; the 401s that trip the breaker and the refusals for good are rarer.
FAULTS = ["429", "429", "503", "503", "timeout after accepting", "timeout after accepting", "401", "422", "reject"]
ADVANCES = [1, 5, 20, 45, 130, 600, 3600, 6 * 3600, 86400, 3 * 86400]  # seconds: within a pass's lease to days
# The dashboard's sequence requests; the stops among them (and among Resend's events) rarer, so that most
# sequences run long enough to meet the other operations.
REQUESTS = ["resend_step"] * 6 + ["skip_step"] * 4 + ["retry_send"] * 4 + ["cancel_sequence", "unsubscribe"]
EVENTS = {"hard bounce": ("email.bounced", {"bounce": {"type": "Permanent", "message": "no such mailbox"}}),
          "soft bounce": ("email.bounced", {"bounce": {"type": "Transient", "message": "mailbox full"}}),
          "complaint": ("email.complained", {}), "delivered": ("email.delivered", {}), "opened": ("email.opened", {}),
          "clicked": ("email.clicked", {})}
EVENT_KINDS = ["hard bounce", "complaint", "soft bounce"] + ["delivered", "opened"] * 5 + ["clicked"] * 2
# Operations that write no send or enrollment row: the tally cannot move, so its recount is skipped (it is slow).
LEAVE_SENDS_AND_ENROLLMENTS = {"advance", "fault", "pause", "resume", "test_mode"}


def random_ops(seed: int, count: int) -> list[tuple]:
    """Operations as data: a name and three numbers in [0, 1) that the history resolves against its state."""
    rng = random.Random(seed)
    names = ["signup"] * 3 + rng.choices(list(WEIGHTS), list(WEIGHTS.values()), k=count - 3)
    return [(name, *(rng.randrange(1000) / 1000 for _ in range(3))) for name in names]


def pick(items: list, x: float):
    return items[int(x * len(items))]


# ---------------------------------------------------------------- the provider and the workers

@dataclass(frozen=True)
class Accepted:
    at: datetime
    trail: int  # the audit trail's last event when the call came: what was settled by then (the clock stands still)
    send_id: str
    to: str
    provider_id: str
    segment: str


class ResendModel(FakeMailer):
    """The FakeMailer as Resend behaves over time: it recognises a key for 24 h only, a fault may strike after
    it accepted a call (the answer lost on the way back), and each accepted email is kept with its time.
    `on_call(emails)` is told of every call as it arrives and returns where the audit trail stood."""

    def __init__(self, clock, on_call):
        super().__init__()
        self.clock, self.on_call = clock, on_call
        self.accepted: list[Accepted] = []
        self.conflicts: list[str] = []
        self._first_used: dict[str, datetime] = {}
        self._script: list[tuple[MailerError, bool]] = []

    def fault(self, error: MailerError, *, after_accepting: bool = False) -> None:
        self._script.append((error, after_accepting))

    def stop_failing(self) -> None:
        super().stop_failing()
        self._script.clear()

    def send(self, emails, idempotency_key):
        now, trail = self.clock(), self.on_call(emails)
        remembered = self._first_used.get(idempotency_key)
        if remembered is not None and now - remembered >= KEY_MEMORY:  # forgotten: a replay sends again
            self._replies.pop(idempotency_key, None)
            del self._first_used[idempotency_key]
        error, after_accepting = self._script.pop(0) if self._script else (None, False)
        if type(error) is PermanentMailerError and idempotency_key in self._first_used:
            # A request Resend has accepted passes its validation again: a 422 waits for a request it has not seen.
            self._script.insert(0, (error, after_accepting))
            error = None
        if error is not None and not after_accepting:
            self.fail_next(error)
        known = len(self.sent)
        try:
            deliveries = super().send(emails, idempotency_key)
        except MailerError as exc:
            if "different request" in str(exc):
                self.conflicts.append(idempotency_key)
            raise
        self._first_used.setdefault(idempotency_key, now)
        self.accepted += [Accepted(now, trail, r.email.send_id, r.email.to, r.provider_id, r.email.tags["segment"])
                          for r in self.sent[known:]]
        if error is not None:
            raise error
        return deliveries


class WorkerDied(Exception):
    """Where the test kills a worker: at its provider call, after its claim and before it records anything."""


class DoomedDispatcher(Dispatcher):
    def __init__(self, services, worker_id: str, *, reaches_provider: bool):
        super().__init__(services, worker_id, DispatchPolicy(lanes=1, batch_size=3))
        self.reaches_provider = reaches_provider

    def _call(self, emails, key):
        if self.reaches_provider:
            super()._call(emails, key)
        raise WorkerDied(self.worker_id)


# ---------------------------------------------------------------- one history

class History:
    def __init__(self, services, mailer: ResendModel, clock):
        self.services, self.mailer, self.clock = services, mailer, clock
        mailer.on_call = self._at_call
        self.workers = [Dispatcher(services, "worker-a", DispatchPolicy(lanes=1, batch_size=3)),
                        Dispatcher(services, "worker-b", DispatchPolicy(lanes=2, batch_size=3))]
        self.log: list[str] = []
        self.violations: list[str] = []
        self.people: list[str] = []
        self.counts: dict[str, tuple[int, int]] = {}
        self.enrolled: dict[str, tuple[str, str]] = {}  # address → (contact, enrollment)
        self.erased: set[str] = set()
        self.stopped: dict[str, tuple[int, set[str]]] = {}  # contact → (accepted before its stop, sends it may replay)
        # (enrollment, step) → when it was settled: (audit event, time)
        self.finishes: dict[tuple[str, int], list[tuple[int, datetime]]] = defaultdict(list)
        self._last_failure: dict[str, str] = {}
        self._events_seen = 0
        self._checked = 0  # accepted emails already held against the order and stop rules (they never change)
        self._crashes = 0

    # -- running
    def run(self, ops: list[tuple]) -> None:
        for op in ops:
            self.step(op)
        self.settle()

    def step(self, op: tuple) -> None:
        name, *numbers = op
        replayable, before = self._replayable(), len(self.mailer.accepted)
        what = getattr(self, f"op_{name}")(*numbers)
        self.log.append(f"{len(self.log):3} {self.clock():%m-%d %H:%M:%S} {op!r}: {what}")
        self.check(replayable, before)
        if name not in LEAVE_SENDS_AND_ENROLLMENTS:
            self.check_tally()

    def settle(self) -> None:
        """The faults stop and sending resumes; passes run whenever something falls due until nothing is left."""
        self.log.append("settle: faults off, sending resumed")
        self.mailer.stop_failing()
        self.op_resume()
        for _ in range(400):
            replayable, before = self._replayable(), len(self.mailer.accepted)
            self.workers[0].run_pass()
            self.check(replayable, before)
            upcoming = self._next_work()
            if upcoming is None:
                break
            self.clock.now = max(self.clock(), upcoming)
        self.check_tally()
        self.check_everything_accounted_for()

    # -- operations (each returns what it did, for the log)
    def op_signup(self, a, b, c):
        if not self.people or (a < 0.35 and len(self.people) < PEOPLE):
            self.people.append(f"lead{len(self.people)}@example.com")
            address, how = self.people[-1], "new"
        else:
            address, how = pick(self.people, b), "same counts" if a < 0.65 else "new counts"
        red, orange = self.counts.get(address, (0, 0)) if how == "same counts" else (int(c * 3), int(c * 9) % 3)
        self.counts[address] = (red, orange)
        [result] = enroll_now(self.services, [signup_request(email=address, red_systems=red, orange_systems=orange)])
        if address in self.erased:
            self._expect(result.outcome is SignupOutcome.REFUSED, f"{address} was erased but signed up again")
        elif result.outcome is SignupOutcome.UPDATED:
            self._expect(not any(x.to == address for x in self.mailer.accepted),
                         f"{address}'s sequence was re-segmented after an email of it went")
        if result.enrollment_id:
            self.enrolled.setdefault(address, (result.contact_id, result.enrollment_id))
        return f"{how} {address} red={red} orange={orange}: {result.outcome.value}"

    def op_advance(self, a, b, c):
        self.clock.advance(seconds=pick(ADVANCES, a))
        return f"clock +{pick(ADVANCES, a)} s"

    def op_dispatch(self, a, b, c):
        worker = pick(self.workers, a)
        return f"{worker.worker_id} handled {worker.run_pass()}"

    def op_fault(self, a, b, c):
        kind = pick(FAULTS, a)
        if kind == "reject":
            address = pick(self.people, b)
            self.mailer.reject(address, "Resend 422 validation_error: invalid `to` address")
            return f"Resend refuses {address} for good"
        error = {
            "429": TransientMailerError("Resend 429 rate_limit_exceeded", retry_after=pick([1, 30, 3600], b),
                                        status=429),
            "503": TransientMailerError("Resend 503 service_unavailable", status=503),
            "timeout after accepting": TransientMailerError("timed out waiting for Resend"),
            "401": AccountMailerError("Resend 401 validation_error: API key is invalid", status=401),
            "422": PermanentMailerError("Resend 422 validation_error: invalid `from` field", status=422),
        }[kind]
        self.mailer.fault(error, after_accepting=kind == "timeout after accepting")
        return f"next call: {kind}"

    def op_crash(self, a, b, c):
        self._crashes += 1
        worker = DoomedDispatcher(self.services, f"doomed-{self._crashes}", reaches_provider=a < 0.5)
        try:
            worker.run_pass()
        except WorkerDied:
            return f"{worker.worker_id} died at its call, {'after' if a < 0.5 else 'before'} reaching Resend"
        return f"{worker.worker_id} found nothing to claim"

    def _switch(self, change, **kwargs):
        with db.write_transaction(self.services.engine) as conn:
            change(conn, actor="marketer", now=self.clock(), **kwargs)

    def op_pause(self, a=0, b=0, c=0):
        self._switch(switches.set_paused, paused=True)
        return "paused"

    def op_resume(self, a=0, b=0, c=0):
        self._switch(switches.set_paused, paused=False)
        return "resumed"

    def op_test_mode(self, a, b, c):
        self._switch(switches.set_test_mode, enabled=a < 0.5)
        return f"test mode {'on' if a < 0.5 else 'off'}"

    def op_request(self, a, b, c):
        if not self.enrolled:
            return "nobody to act on"
        address = pick(sorted(self.enrolled), a)
        contact_id, enrollment_id = self.enrolled[address]
        kind, step = pick(REQUESTS, b), 1 + int(c * 7)
        sends = self._sends(send_t.c.enrollment_id == enrollment_id)
        payload = {"enrollment_id": enrollment_id, "contact_id": contact_id, "step": step}
        if kind == "resend_step":  # mostly of a step that went (or was skipped or failed), as a marketer would
            latest = {s.step: s for s in sorted(sends, key=lambda s: s.generation)}
            finished = [n for n, s in sorted(latest.items()) if s.status in ("sent", "skipped", "failed")]
            step = pick(finished, c) if finished and c < 0.8 else step
            payload.update(step=step, generation=latest[step].generation)
        if kind == "retry_send":
            # A failure that may have been delivered too: its retry is a new copy the marketer chose (the dashboard
            # warns), and the sequence must still count as begun (a resubmission re-segmented it once).
            failed = sorted((s for s in sends if s.status == "failed"), key=lambda s: (s.step, s.generation))
            if not failed:
                return f"{address}: no failed send to retry"
            payload = {"send_id": pick(failed, c).id, "contact_id": contact_id}
            step = pick(failed, c).step
        with db.write_transaction(self.services.engine) as conn:
            request_action(conn, kind, payload, requested_by="marketer", now=self.clock())
        return f"{address}: {kind} step {step} requested"

    def op_unsubscribe_link(self, a, b, c):
        if not self.enrolled:
            return "nobody to unsubscribe"
        address = pick(sorted(self.enrolled), a)
        with db.write_transaction(self.services.engine) as conn:
            done = unsubscribe_contact(conn, self.enrolled[address][0], actor="recipient", now=self.clock())
        return f"{address} unsubscribed by link: {done}"

    def op_event(self, a, b, c):
        if not self.mailer.accepted:
            return "no email to hear about"
        email, kind = pick(self.mailer.accepted, a), pick(EVENT_KINDS, b)
        event_type, data = EVENTS[kind]
        event = {"type": event_type, "created_at": self.clock().isoformat(),
                 "data": {"email_id": email.provider_id, "to": [email.to], **data}}
        with db.write_transaction(self.services.engine) as conn:
            outcome = provider_events.record_provider_event(conn, f"msg_{len(self.log)}", event, self.clock())
        return f"{kind} for {email.to}'s {email.send_id[-6:]}: {outcome}"

    def op_forget(self, a, b, c):
        candidates = [p for p in sorted(self.enrolled) if p not in self.erased]
        if not candidates:
            return "nobody to erase"
        address = pick(candidates, a)
        with db.write_transaction(self.services.engine) as conn:
            erasure.forget(conn, address, actor="cli", now=self.clock())
        self.erased.add(address)
        return f"{address} erased"

    # -- what the provider sees at each call
    def _at_call(self, emails) -> int:
        """Checked as the call arrives (an assertion raised inside the dispatcher would pass for a provider error)."""
        with db.read_transaction(self.services.engine) as conn:
            trail = conn.scalar(sa.select(sa.func.coalesce(sa.func.max(event_t.c.id), 0)))
            if switches.read(conn).paused:
                self.violations.append(f"a provider call while paused: {[e.to for e in emails]}")
            people = conn.execute(sa.select(send_t.c.enrollment_id).where(
                send_t.c.id.in_([e.send_id for e in emails]))).scalars().all()
        if len(set(people)) != len(people):
            self.violations.append(f"two emails of one sequence in one call: {[e.send_id for e in emails]}")
        return trail

    # -- the invariants
    def check(self, replayable: dict[str, set[str]], before: int) -> None:
        sends = {s.id: s for s in self._sends(sa.true())}
        self._read_trail(sends)
        self._check_once(sends)
        self._check_order(sends)
        self._check_stops(sends, replayable, before)
        self._check_reasons(sends)
        self._checked = len(self.mailer.accepted)
        in_flight = Counter(s.enrollment_id for s in sends.values() if s.status == "sending")
        self._expect(max(in_flight.values(), default=0) <= 1, f"two emails of one sequence in flight: {in_flight}")
        self._expect(not self.mailer.conflicts, f"a key replayed with other members: {self.mailer.conflicts}")
        assert not self.violations, "\n".join(self.violations)

    def _expect(self, holds: bool, violation: str) -> None:
        if not holds:
            self.violations.append(violation)

    def _check_once(self, sends) -> None:
        """One copy per (enrollment, step, generation), beyond what Resend's key deduplicates; one segment per
        sequence; and a send recorded sent or certainly failed only as the provider answered."""
        copies = Counter(x.send_id for x in self.mailer.accepted)
        for send_id, n in copies.items():
            s = sends[send_id]
            self._expect(n <= 1,
                         f"step {s.step} gen {s.generation} of {s.enrollment_id} delivered {n} times")
        by_enrollment = defaultdict(set)
        for x in self.mailer.accepted:
            by_enrollment[sends[x.send_id].enrollment_id].add(x.segment)
        for enrollment_id, segments in by_enrollment.items():
            self._expect(len(segments) == 1, f"{enrollment_id} got emails of segments {segments}")
        for s in sends.values():
            if s.status == "sent":
                self._expect(copies[s.id] >= 1, f"send {s.id} recorded sent but never accepted")
            if s.status == "failed" and copies[s.id] and not may_have_been_delivered(s.last_error):
                self._expect(False, f"send {s.id} was delivered but recorded certainly failed: {s.last_error}")

    def _check_order(self, sends) -> None:
        """Step k goes only once step k-1 was settled (sent, skipped, failed), and never within half the gap."""
        timings = self._timings()
        for x in self.mailer.accepted[self._checked:]:  # what settled before a call is all read by the check after it
            s = sends[x.send_id]
            if s.step == 1:
                continue
            settled = [at for event, at in self.finishes[(s.enrollment_id, s.step - 1)] if event <= x.trail]
            if not settled:
                self._expect(False, f"step {s.step} of {s.enrollment_id} went at {x.at} before step {s.step - 1} "
                                    f"was settled")
                continue
            gap = planned_gap(CHRISTMAS_2025, s.step, Timing(timings[s.enrollment_id]))
            self._expect(x.at >= max(settled) + gap / 2, f"step {s.step} of {s.enrollment_id} went at {x.at}, "
                                                         f"within half its gap of step {s.step - 1} ({max(settled)})")

    def _check_stops(self, sends, replayable, before) -> None:
        """Nothing to a stopped contact but a batch already handed over when the stop came (DESIGN §4.3)."""
        with self.services.engine.connect() as conn:
            stopped = set(conn.execute(sa.select(contact_t.c.id).where(sa.or_(
                contact_t.c.unsubscribed_at.is_not(None), contact_t.c.suppressed_at.is_not(None)))).scalars())
            stopped |= set(conn.execute(sa.select(enrollment_t.c.contact_id)
                                        .where(enrollment_t.c.status == "cancelled")).scalars())
        for contact_id in stopped - set(self.stopped):
            self.stopped[contact_id] = (before, replayable.get(contact_id, set()))
        for i, x in enumerate(self.mailer.accepted[self._checked:], start=self._checked):
            contact_id = sends[x.send_id].contact_id
            if contact_id in self.stopped:
                since, allowed = self.stopped[contact_id]
                late = i >= since and x.send_id not in allowed
                self._expect(not late, f"step {sends[x.send_id].step} went to {x.to} after their stop")

    def _check_reasons(self, sends) -> None:
        for s in sends.values():
            if s.status == "failed":
                self._expect(bool(s.last_error) and self._last_failure.get(s.id),
                             f"send {s.id} failed without a reason in its row and the audit trail")

    def check_tally(self) -> None:
        """The dashboard, /metrics and `stats --json` read their counts from the tally: it must equal a recount."""
        with db.read_transaction(self.services.engine) as conn:
            expected, actual = counted(conn), tallied(conn)
        for figure in expected:
            drift = {key: (actual[figure].get(key, 0), n) for key, n in expected[figure].items()
                     if actual[figure].get(key, 0) != n}
            drift |= {key: (n, 0) for key, n in actual[figure].items() if key not in expected[figure]}
            self._expect(not drift, f"the tally's {figure} drifted from the rows, (tallied, counted): {drift}")
        assert not self.violations, "\n".join(self.violations)

    def check_everything_accounted_for(self) -> None:
        """With the faults gone and time enough, every sequence was completed or stopped, each step accounted for."""
        sends = self._sends(sa.true())
        waiting = [(s.enrollment_id, s.step, s.status, s.ready) for s in sends if s.status in ("scheduled", "sending")]
        self._expect(not waiting, f"sends left waiting: {waiting}")
        with self.services.engine.connect() as conn:
            statuses = dict(conn.execute(sa.select(enrollment_t.c.id, enrollment_t.c.status)).all())
        latest = {}
        for s in sorted(sends, key=lambda s: s.generation):
            latest[(s.enrollment_id, s.step)] = s.status
        for enrollment_id, status in statuses.items():
            self._expect(status != "active", f"{enrollment_id} still active with nothing left to send")
            if status == "completed":
                steps = [latest.get((enrollment_id, n)) for n in CHRISTMAS_2025.step_numbers]
                self._expect(all(st in ("sent", "skipped", "failed") for st in steps),
                             f"{enrollment_id} completed with steps {steps}")
        assert not self.violations, "\n".join(self.violations)

    # -- reading
    def _sends(self, where) -> list:
        with self.services.engine.connect() as conn:
            return conn.execute(sa.select(send_t).where(where)).all()

    def _timings(self) -> dict[str, str]:
        with self.services.engine.connect() as conn:
            return dict(conn.execute(sa.select(enrollment_t.c.id, enrollment_t.c.timing)).all())

    def _replayable(self) -> dict[str, set[str]]:
        """Per contact, the sends in a batch that may have reached the provider: a stop cannot recall them."""
        with self.services.engine.connect() as conn:
            rows = conn.execute(sa.select(send_t.c.contact_id, send_t.c.id)
                                .join(batch_t, batch_t.c.id == send_t.c.batch_id)
                                .where(send_t.c.status == "sending", batch_t.c.refused_attempts < batch_t.c.attempts))
            found = defaultdict(set)
            for contact_id, send_id in rows:
                found[contact_id].add(send_id)
        return found

    def _next_work(self) -> datetime | None:
        with self.services.engine.connect() as conn:
            due = conn.scalar(sa.select(sa.func.min(send_t.c.due_at)).where(
                send_t.c.status == "scheduled", send_t.c.ready.is_(True)))
            lease = conn.scalar(sa.select(sa.func.min(send_t.c.lease_expires_at)).where(send_t.c.status == "sending"))
        times = [t for t in (due, lease) if t is not None]
        return min(times) if times else None

    def _read_trail(self, sends) -> None:
        """When each step was settled, and each send's latest failure, from the audit trail."""
        with self.services.engine.connect() as conn:
            events = conn.execute(sa.select(event_t.c.id, event_t.c.at, event_t.c.kind, event_t.c.send_id,
                                            event_t.c.enrollment_id, event_t.c.detail)
                                  .where(event_t.c.id > self._events_seen,
                                         event_t.c.kind.in_(["send_sent", "send_failed", "step_skipped"]))
                                  .order_by(event_t.c.id)).all()
        for e in events:
            self._events_seen = e.id
            detail = json.loads(e.detail) if e.detail else {}
            if e.kind == "step_skipped":
                self.finishes[(e.enrollment_id, detail["step"])].append((e.id, e.at))
                continue
            s = sends[e.send_id]
            self.finishes[(s.enrollment_id, s.step)].append((e.id, e.at))
            if e.kind == "send_failed":
                self._last_failure[s.id] = detail.get("error")


# ---------------------------------------------------------------- the tests

@pytest.fixture
def history(make_settings, clock):
    mailer = ResendModel(clock, on_call=lambda emails: 0)
    built = build_services(make_settings(), mailer=mailer, clock=clock, migrate=True)
    status_log = SendStatusLog(built.engine)
    try:
        yield History(built, mailer, clock)
        status_log.assert_allowed()
    finally:
        built.close()


@pytest.mark.parametrize("seed", range(FIRST_SEED, FIRST_SEED + SEEDS))
def test_random_histories_send_each_email_once_in_order_spaced_and_nothing_after_a_stop(history, seed):
    ops = random_ops(seed, OPS_PER_SEED)
    try:
        history.run(ops)
    except Exception as exc:
        raise AssertionError(f"seed {seed} failed (random_ops({seed}, {len(ops)}) replays it) after:\n"
                             + "\n".join(history.log) + f"\n{type(exc).__name__}: {exc}") from exc
