"""Prometheus metrics: in-process instruments for the dispatcher, and database gauges read at scrape time."""

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from core import db, tally
from core.db_outages import DatabaseOutageLog
from core.tables import outbox_t, send_t

log = logging.getLogger(__name__)


class Metrics:
    """One registry per process, built by bootstrap; the API serves it at /metrics."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.dispatch_lateness = Histogram(
            "nurture_dispatch_lateness_seconds", "How late a send was claimed, after its due time.",
            buckets=(0.1, 0.5, 1, 2, 5, 15, 60, 300, 900, 3600, 21600, 86400), registry=self.registry)
        self.provider_latency = Histogram(
            "nurture_provider_call_seconds", "Duration of one call to the email provider.",
            buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=self.registry)
        self.provider_rate_limited = Counter(
            "nurture_provider_rate_limited", "Provider calls answered 429.", registry=self.registry)
        self.send_outcomes = Counter(
            "nurture_send_outcomes", "Send outcomes recorded by this process.", ["outcome"], registry=self.registry)
        # The intake's group commit, as this process saw it.
        self.intake_signups = Counter(
            "nurture_intake_signups", "Signups the intake answered, by outcome (failed: not stored, answered 503).",
            ["outcome"], registry=self.registry)
        self.intake_batch_size = Histogram(
            "nurture_intake_batch_signups", "Signups committed together in one intake transaction.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=self.registry)
        self.intake_commit = Histogram(
            "nurture_intake_commit_seconds", "Duration of one intake transaction: a batch of signups and their sends.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1, 5), registry=self.registry)
        self.intake_wait = Histogram(
            "nurture_intake_wait_seconds",
            "How long a valid webhook signup waited for its transaction: queue, gather window and commit.",
            buckets=(0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 1, 5),
            registry=self.registry)

    def watch_database(self, engine: sa.Engine, clock: Callable[[], datetime]) -> None:
        self.registry.register(DatabaseCollector(engine, clock))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class DatabaseCollector(Collector):
    """Gauges computed from the database at scrape time, so every process reports the same truth."""

    def __init__(self, engine: sa.Engine, clock: Callable[[], datetime]):
        self._engine = engine
        self._clock = clock
        # Every scrape of an outage would otherwise log its traceback: one line when it starts instead.
        self._outage = DatabaseOutageLog("metrics", "metrics")

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with self._engine.connect() as conn:
                yield from self._families(conn, self._clock())
            self._outage.succeeded()
        except sa.exc.SQLAlchemyError as exc:
            if db.storage_unavailable(exc):
                self._outage.failed(exc)
            else:
                log.exception("metrics could not read the database", extra={"action": "metrics"})
            up = GaugeMetricFamily("nurture_database_up", "1 when the database answered the scrape.")
            up.add_metric([], 0)
            yield up

    def _families(self, conn: sa.Connection, now: datetime) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("nurture_database_up", "1 when the database answered the scrape.")
        up.add_metric([], 1)
        yield up
        signups = GaugeMetricFamily("nurture_enrollments", "Enrollments by segment.", labels=["segment"])
        for segment, n in sorted(tally.signups_by_segment(conn).items()):
            signups.add_metric([segment], n)
        yield signups
        sends = GaugeMetricFamily("nurture_sends", "Sends by status.", labels=["status"])
        for status, n in sorted(tally.sends_by_status(conn).items()):
            sends.add_metric([status], n)
        yield sends
        due = (send_t.c.status == "scheduled") & send_t.c.ready.is_(True) & (send_t.c.due_at <= now)
        depth, oldest = conn.execute(sa.select(sa.func.count(), sa.func.min(send_t.c.due_at)).where(due)).one()
        queue = GaugeMetricFamily("nurture_queue_depth", "Sends due now and not yet claimed.")
        queue.add_metric([], depth)
        yield queue
        overdue = GaugeMetricFamily("nurture_oldest_overdue_seconds", "Age of the oldest due, unclaimed send.")
        overdue.add_metric([], (now - _aware(oldest)).total_seconds() if oldest else 0)
        yield overdue
        backlog = GaugeMetricFamily("nurture_outbox_backlog", "Side-channel work not yet done.", labels=["channel"])
        for channel, n in conn.execute(sa.select(outbox_t.c.channel, sa.func.count())
                                       .where(outbox_t.c.done_at.is_(None)).group_by(outbox_t.c.channel)):
            backlog.add_metric([channel], n)
        yield backlog


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
