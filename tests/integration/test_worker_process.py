"""The worker's main loop: a supervisor learns when the API it serves has died."""

import signal

import pytest

from core import worker
from core.worker import WorkerJobs, run_forever


class DeadApi:
    """An API thread that started, then died (what a crash inside uvicorn leaves)."""

    def start(self) -> None:
        pass

    def alive(self) -> bool:
        return False

    def stop(self) -> None:
        pass


@pytest.fixture
def restored_signals():
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_worker_whose_api_died_exits_1_so_its_supervisor_restarts_it(services, monkeypatch, restored_signals):
    monkeypatch.setattr(worker, "API_WATCH_SECONDS", 0.2)

    assert run_forever(WorkerJobs(services, "worker-a"), DeadApi()) == 1
