"""The Notion mirror's worker job: drain the "notion" outbox into one page per enrollment.

Each pass claims due outbox rows under a lease and coalesces them by enrollment, because only
the latest state matters: it is read from the database, not from the rows. An enrollment
without a known page is looked up by Email before a page is made, so a lost response never
makes a second page, and a per-enrollment lease keeps two workers from both making it.
Nothing here is on the send path: a failure backs off its rows and, when Notion as a whole
is unwell, pauses the mirror; emails go out regardless.

Each pass also reads back the "Stop" boxes a marketer ticked and cancels those sequences.
"""

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from core import controls, db, outbox, repo
from core.bootstrap import Services
from core.erasure import is_erased_address
from core.notion import store
from core.notion.errors import NotionAccessError, NotionError, NotionPageConflict, NotionRequestError, \
    NotionUnavailable
from core.notion.port import NotionMirror, NotionPage
from core.outages import OutageNote
from core.notion.properties import ACTIVE, BUSINESS, EnrollmentState, fingerprint, page_properties, parse_row
from core.sequencing import backoff

log = logging.getLogger(__name__)
CHANNEL = "notion"
STOP_REASON = "Stop ticked in Notion"


@dataclass(frozen=True)
class SyncPolicy:
    """Batch size, leases and how often the Stop boxes and business links are read."""

    claim_size: int = 50
    lease: timedelta = timedelta(minutes=2)
    budget_seconds: float = 20.0
    stop_poll: timedelta = timedelta(seconds=10)
    business_recheck: timedelta = timedelta(hours=24)
    busy_retry: timedelta = timedelta(seconds=5)


@dataclass
class SyncReport:
    """What one pass did; `paused` when Notion as a whole failed and the mirror is waiting."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    stopped: int = 0
    backfilled: int = 0  # enrollments queued for a first write because nothing had ever queued one
    paused: bool = False


@dataclass
class _Group:
    enrollment_id: str
    item_ids: list[str]
    attempts: int
    state: EnrollmentState | None = None
    link: store.PageLink | None = None
    done: bool = False


class NotionSync:
    """The outbox-draining service; `run_pass` is the worker job."""

    def __init__(self, services: Services, mirror: NotionMirror, worker_id: str, policy: SyncPolicy = SyncPolicy()):
        self.services = services
        self.mirror = mirror
        self.worker_id = worker_id
        self.policy = policy
        self._paused_until: datetime | None = None
        self._outages = 0
        self._outage = OutageNote(services, CHANNEL, worker_id)
        self._backfilled = False  # once per process: enrollments from before Notion was configured
        self._next_stop_poll: datetime | None = None

    def run_pass(self) -> SyncReport:
        """Read back Stop boxes, then mirror claimed changes until none are due or the time budget is spent."""
        report = SyncReport()
        now = self.services.clock()
        if self._paused_until and now < self._paused_until:
            report.paused = True
            return report
        deadline = time.monotonic() + self.policy.budget_seconds
        if not self._backfilled:
            with db.write_transaction(self.services.engine) as conn:
                report.backfilled = store.queue_unmirrored(conn, now)
            self._backfilled = True
        try:
            self._read_stops(report)
            while not self._time_up(deadline):
                with db.write_transaction(self.services.engine) as conn:
                    items = outbox.claim(conn, CHANNEL, self.services.clock(), self.policy.lease,
                                         self.policy.claim_size)
                if not items:
                    break
                self._mirror_batch(_coalesce(items), report, deadline)
        except NotionError as exc:  # Notion as a whole (or its schema) is failing; per-page errors stay inside
            self._pause(exc)
            report.paused = True
        else:
            self._outage.clear()
            self._outages = 0
            self._paused_until = None
        return report

    # ------------------------------------------------------------------ mirroring

    def _mirror_batch(self, groups: list[_Group], report: SyncReport, deadline: float) -> None:
        try:
            live = self._prepare(groups)
            for group in [g for g in live if g.link.page_id is None and is_erased_address(g.state.email)]:
                self._leave_unwritten(group, report)
            live = [g for g in live if not g.done]
            lookups = [g.state.email for g in live if g.link.page_id is None]
            try:
                found = self.mirror.find_pages(lookups) if lookups else {}
            except NotionError as exc:
                self._fail([g for g in live if g.link.page_id is None], exc, report)
                raise
            for group in live:
                if self._time_up(deadline):
                    break
                self._push(group, found.get(group.state.email.lower(), []), report)
        finally:
            self._give_back([g for g in groups if not g.done])

    def _time_up(self, deadline: float) -> bool:
        # A stopping worker writes no further page: what is left goes back, and the stop is not held for the budget.
        return time.monotonic() >= deadline or self.services.stopping.is_set()

    def _prepare(self, groups: list[_Group]) -> list[_Group]:
        """Lease each enrollment's page and read what it should show; skip ones another worker holds."""
        now, live = self.services.clock(), []
        with db.write_transaction(self.services.engine) as conn:
            for group in groups:
                state = store.enrollment_state(conn, group.enrollment_id) if group.enrollment_id else None
                if state is None:
                    outbox.mark_done(conn, group.item_ids, now, note="nothing to mirror: no such enrollment")
                    group.done = True
                elif not store.take_lease(conn, group.enrollment_id, state.contact_id, self.worker_id, now,
                                          self.policy.lease):
                    outbox.release(conn, group.item_ids, now + self.policy.busy_retry)
                    group.done = True
                else:
                    group.state, group.link = state, store.link_of(conn, group.enrollment_id)
                    live.append(group)
        return live

    def _leave_unwritten(self, group: _Group, report: SyncReport) -> None:
        """A person erased before their page was linked: a page now would only hold the placeholder, and
        looking one up by it finds nothing of theirs. (A row the original system made under their real
        address cannot be found any more; `forget` says so when Notion is configured.)"""
        with db.write_transaction(self.services.engine) as conn:
            store.drop_lease(conn, group.enrollment_id, self.worker_id)
            outbox.mark_done(conn, group.item_ids, self.services.clock(),
                             note="erased before a page was linked: no page written")
        group.done = True
        report.unchanged += 1

    def _push(self, group: _Group, existing: list[NotionPage], report: SyncReport) -> None:
        state, link, now = group.state, group.link, self.services.clock()
        try:
            schema = self.mirror.schema()
            business_id, checked_at = self._business(state, link, schema, now)
            properties = page_properties(state, schema, business_id)
            digest = fingerprint(properties)
            page_id = link.page_id or (existing[0].id if existing else None)
            if link.page_id and digest == link.synced_hash:
                page, outcome = None, "unchanged"
            elif page_id:
                page, outcome = self.mirror.update_page(page_id, properties), "updated"
            else:
                page, outcome = self.mirror.create_page(properties), "created"
        except NotionError as exc:
            self._fail([group], exc, report)
            if not isinstance(exc, NotionRequestError):
                raise
            return
        with db.write_transaction(self.services.engine) as conn:
            if page is not None:
                store.save_synced(conn, state.enrollment_id, self.worker_id, now, page_id=page.id, page_url=page.url,
                                  synced_hash=digest, business_page_id=business_id, business_checked_at=checked_at)
                if parse_row(page).stop and state.status == ACTIVE:
                    self._cancel(conn, state.enrollment_id, now)
                    report.stopped += 1
            else:
                store.drop_lease(conn, state.enrollment_id, self.worker_id)
            outbox.mark_done(conn, group.item_ids, now)
        group.done = True
        setattr(report, outcome, getattr(report, outcome) + 1)

    def _business(self, state: EnrollmentState, link: store.PageLink, schema: dict, now: datetime):
        """The BusinessX record to link, looked up by email at most once a day while none is found."""
        if is_erased_address(state.email):
            return None, link.business_checked_at  # erased: their page keeps no link back to them
        if link.business_page_id or schema.get(BUSINESS) != "relation":
            return link.business_page_id, link.business_checked_at
        if link.business_checked_at and now - link.business_checked_at < self.policy.business_recheck:
            return None, link.business_checked_at
        try:
            return self.mirror.find_business(state.email), now
        except (NotionAccessError, NotionRequestError) as exc:
            # The link is a nicety: a BusinessX database that is not shared, or that refuses the lookup,
            # must not keep the contact's own page from being written. Tried again after business_recheck.
            log.warning("BusinessX lookup refused; the page is written without a business link: %s", exc,
                        extra={"action": "notion_business", "enrollment": state.enrollment_id})
            return None, now

    def _fail(self, groups: list[_Group], exc: NotionError, report: SyncReport) -> None:
        if _rate_limited(exc):  # nothing was refused: the rows wait out Retry-After unattempted, not failing
            self._give_back(groups, self.services.clock() + _rate_limit_wait(exc))
            return
        now, reason = self.services.clock(), str(exc)[:2000]
        permanent = isinstance(exc, NotionRequestError) and not isinstance(exc, NotionPageConflict)
        retry_after = getattr(exc, "retry_after", None)
        with db.write_transaction(self.services.engine) as conn:
            for group in groups:
                gone = permanent and exc.page_gone and group.link is not None and group.link.page_id is not None
                delay = (timedelta(0) if gone else backoff(group.attempts + 1, None, base=60, cap=3600) if permanent
                         else backoff(group.attempts + 1, retry_after))
                store.save_failure(conn, group.enrollment_id, self.worker_id, reason, now, forget_page=gone)
                outbox.back_off(conn, group.item_ids, reason, now, delay)
                group.done = True
                report.failed += 1
        log.warning("notion mirror failed for %d enrollment(s): %s", len(groups), reason,
                    extra={"action": "notion_sync", "enrollments": [g.enrollment_id for g in groups]})

    def _give_back(self, groups: list[_Group], at: datetime | None = None) -> None:
        """Rows this pass claimed but did not reach go back unattempted, due at once (or `at`)."""
        if not groups:
            return
        at = at or self.services.clock()
        with db.write_transaction(self.services.engine) as conn:
            for group in groups:
                if group.state is not None:
                    store.drop_lease(conn, group.enrollment_id, self.worker_id)
                outbox.release(conn, group.item_ids, at)
                group.done = True

    def _pause(self, exc: NotionError) -> None:
        """Notion as a whole is failing: leave it alone for a while rather than hammer it. A rate limit
        (Notion's per-minute window asks for up to 60 s, a workspace's for more) is only waited out: it
        says Notion is answering, so Settings and /health show no outage for it."""
        if _rate_limited(exc):
            self._paused_until = self.services.clock() + _rate_limit_wait(exc)
            log.info("notion mirror waits %ss for Notion's rate limit", _rate_limit_wait(exc).total_seconds(),
                     extra={"action": "notion_sync"})
            return
        self._outages += 1
        delay = backoff(self._outages, getattr(exc, "retry_after", None), base=5, cap=300)
        self._paused_until = self.services.clock() + delay
        self._outage.show(f"{exc} (retrying {self._paused_until:%H:%M:%S} UTC)")
        log.warning("notion mirror paused for %ss: %s", delay.total_seconds(), exc, extra={"action": "notion_sync"})

    # ------------------------------------------------------------------ Stop read-back

    def _read_stops(self, report: SyncReport) -> None:
        now = self.services.clock()
        if self._next_stop_poll and now < self._next_stop_poll:
            return
        try:
            pages = self.mirror.stopped_pages()
        except NotionRequestError as exc:  # a refused query must not hold up the mirror; the schema check says why
            log.warning("could not read Stop boxes: %s", exc, extra={"action": "notion_stop"})
            pages = []
        self._next_stop_poll = now + self.policy.stop_poll
        if not pages:
            return
        with db.write_transaction(self.services.engine) as conn:
            for page in pages:
                found = store.enrollment_for_page(conn, page.id, parse_row(page).email)
                if found and found[1] == ACTIVE:
                    self._cancel(conn, found[0], now)
                    report.stopped += 1

    def _cancel(self, conn, enrollment_id: str, now: datetime) -> None:
        """Cancel the rest of a sequence a marketer stopped in Notion; the audit trail names Notion."""
        cancelled = controls.cancel_sequence(conn, enrollment_id, actor="notion", now=now, reason=STOP_REASON)
        contact_id = store.enrollment_contact(conn, enrollment_id)
        repo.insert_outbox(conn, [repo.outbox_row(CHANNEL, contact_id, {"enrollment_id": enrollment_id}, now)])
        log.info("sequence stopped from Notion", extra={"action": "notion_stop", "enrollment": enrollment_id,
                                                         "cancelled_sends": cancelled})


def _rate_limited(exc: NotionError) -> bool:
    return isinstance(exc, NotionUnavailable) and exc.status == 429


def _rate_limit_wait(exc: NotionError) -> timedelta:
    return backoff(1, getattr(exc, "retry_after", None), base=1)


def _coalesce(items: list[outbox.OutboxItem]) -> list[_Group]:
    """One group per enrollment, oldest first: many changes become one write of the latest state."""
    groups: dict[str, _Group] = {}
    for item in items:
        key = str(item.payload.get("enrollment_id") or "")
        group = groups.setdefault(key, _Group(key, [], 0))
        group.item_ids.append(item.id)
        group.attempts = max(group.attempts, item.attempts)
    return list(groups.values())
