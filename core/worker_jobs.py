"""The jobs a worker runs besides its heartbeat."""

from core import db, erasure, outbox
from core.actions import ActionRunner
from core.dispatch import Dispatcher
from core.side_jobs import register_side_jobs
from core.worker import WorkerJobs

DISPATCH_SECONDS = 1.0
PURGE_SECONDS = 3600.0
# An erased person's address is held only while an email of theirs is in flight; this soon after, it goes.
RELEASE_HOLDS_SECONDS = 60.0


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

    def release_erasure_holds() -> None:
        with db.write_transaction(jobs.services.engine) as conn:
            erasure.release_settled_holds(conn)

    def purge_finished_outbox_rows() -> None:
        while True:
            with db.write_transaction(jobs.services.engine) as conn:
                if outbox.purge_done(conn, jobs.services.clock()) < outbox.PURGE_CHUNK:
                    return

    jobs.add(carry_out_actions, 1.0)
    jobs.add(dispatch, DISPATCH_SECONDS)
    jobs.add(release_erasure_holds, RELEASE_HOLDS_SECONDS)
    jobs.add(purge_finished_outbox_rows, PURGE_SECONDS)
    register_side_jobs(jobs)  # after dispatch, so `--once` sends before it mirrors
