"""The jobs a worker runs besides its heartbeat."""

from core.worker import WorkerJobs


def register_jobs(jobs: WorkerJobs) -> None:
    """Attach every periodic job to the worker."""
