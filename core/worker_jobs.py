"""The jobs a worker runs besides its heartbeat."""

from core.actions import ActionRunner
from core.dispatch import Dispatcher
from core.side_jobs import register_side_jobs
from core.worker import WorkerJobs

DISPATCH_SECONDS = 1.0


def register_jobs(jobs: WorkerJobs, *, once: bool = False) -> None:
    """Attach every periodic job to the worker. `once` dispatches until nothing is due, without lingering."""
    dispatcher = Dispatcher(jobs.services, jobs.worker_id)
    actions = ActionRunner(jobs.services, jobs.worker_id)

    def carry_out_actions() -> None:
        actions.run_pending()

    def dispatch() -> None:
        if once:
            dispatcher.run_pass()
        else:
            dispatcher.run_until_idle(budget_seconds=DISPATCH_SECONDS * 0.9)

    jobs.add(carry_out_actions, 1.0)
    jobs.add(dispatch, DISPATCH_SECONDS)
    register_side_jobs(jobs)  # after dispatch, so `--once` sends before it mirrors
