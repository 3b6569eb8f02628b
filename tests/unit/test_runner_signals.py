"""`make run` stopping on a signal that arrives while it is starting a child."""

import os
import signal
from types import SimpleNamespace

import pytest

from core import runner


class ChildStartedThenInterrupted:
    """Stands in for Popen: the child exists (forked) when Ctrl-C arrives, before Popen returns."""

    started: list["ChildStartedThenInterrupted"] = []

    def __init__(self, command, **_options):
        self.command = command
        ChildStartedThenInterrupted.started.append(self)
        os.kill(os.getpid(), signal.SIGINT)


@pytest.fixture
def stop_signals_as_the_runner_sets_them():
    previous = signal.signal(signal.SIGINT, runner._stop_signals.handle)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_while_a_child_is_starting_stops_the_run_with_that_child_on_record(
        monkeypatch, stop_signals_as_the_runner_sets_them):
    # The interrupt used to raise inside Popen, after the fork: the worker ran on, unrecorded and never stopped.
    ChildStartedThenInterrupted.started = []
    monkeypatch.setattr(runner.subprocess, "Popen", ChildStartedThenInterrupted)
    children = {}
    with pytest.raises(KeyboardInterrupt):
        runner._start_children(SimpleNamespace(dashboard_host="127.0.0.1", dashboard_port=8501), children)
    assert list(children) == ["worker"]  # on record, so the runner's _stop reaches it
    assert children["worker"] is ChildStartedThenInterrupted.started[0]
    assert len(ChildStartedThenInterrupted.started) == 1  # and the dashboard was never started


def test_ctrl_c_outside_a_child_start_interrupts_at_once(stop_signals_as_the_runner_sets_them):
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        signal.pause()  # only reached if the handler did not raise
