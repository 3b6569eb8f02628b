import logging
from types import SimpleNamespace

from apscheduler.events import (
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
)

from core.overruns import OverrunWatch


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def event(code: int, job_id: str = "dispatch"):
    return SimpleNamespace(code=code, job_id=job_id)


def messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "core.overruns"]


def test_a_run_skipped_over_within_the_limit_is_not_reported(caplog):
    clock = Clock()
    watch = OverrunWatch(limit=300, clock=clock)
    watch(event(EVENT_JOB_SUBMITTED))
    for clock.now in range(1, 300):
        watch(event(EVENT_JOB_MAX_INSTANCES))
    watch(event(EVENT_JOB_EXECUTED))

    assert messages(caplog) == []


def test_a_long_run_is_reported_once_per_limit_then_when_it_returns(caplog):
    caplog.set_level(logging.INFO, logger="core.overruns")
    clock = Clock()
    watch = OverrunWatch(limit=300, clock=clock)
    watch(event(EVENT_JOB_SUBMITTED))
    for clock.now in range(1, 700):
        watch(event(EVENT_JOB_MAX_INSTANCES))
    watch(event(EVENT_JOB_EXECUTED))

    said = messages(caplog)
    assert [m.split(" and ")[0] for m in said[:2]] == ['job "dispatch" has been running for 300 s',
                                                        'job "dispatch" has been running for 600 s']
    assert said[2:] == ['job "dispatch" returned after 699 s']


def test_each_job_is_timed_from_its_own_run(caplog):
    clock = Clock()
    watch = OverrunWatch(limit=300, clock=clock)
    watch(event(EVENT_JOB_SUBMITTED, "sync_notion_mirror"))
    clock.now = 400
    watch(event(EVENT_JOB_MISSED, "sync_notion_mirror"))  # that run ended (skipped as late)
    watch(event(EVENT_JOB_SUBMITTED, "sync_notion_mirror"))
    clock.now = 401
    watch(event(EVENT_JOB_MAX_INSTANCES, "sync_notion_mirror"))
    watch(event(EVENT_JOB_MAX_INSTANCES, "heartbeat"))  # never seen submitted: nothing to time

    assert messages(caplog) == []
