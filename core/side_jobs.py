"""The side-channel jobs a worker runs: the Notion mirror and Discord alerts, each only when configured.

Each runs on one worker at a time (a singleton lease), so several workers together still keep
to Notion's 3 requests/s and post each alert from one place. Both are guarded: whatever goes
wrong in a side channel is logged and never reaches the scheduler or a `--once` run, so it can
never stop or delay the dispatch job.
"""

from collections.abc import Callable

from core import singleton
from core.alerts import AlertService
from core.db_outages import guarded
from core.discord import DiscordWebhook
from core.notion.client import notion_from_settings
from core.notion.sync import NotionSync
from core.worker import WorkerJobs

SYNC_SECONDS = 2.0
ALERT_SECONDS = 2.0


def register_side_jobs(jobs: WorkerJobs) -> None:
    """Add the Notion sync and the Discord alert jobs for whichever of the two is configured."""
    settings = jobs.services.settings
    if settings.notion_configured:
        mirror = NotionSync(jobs.services, notion_from_settings(settings), jobs.worker_id)
        jobs.add(_singleton_job(jobs, "sync_notion_mirror", "notion_sync", mirror.run_pass), SYNC_SECONDS)
    if settings.discord_configured:
        alerts = AlertService(jobs.services, DiscordWebhook(settings.discord_webhook_url), jobs.worker_id)
        jobs.add(_singleton_job(jobs, "post_discord_alerts", "alerts", alerts.run_pass), ALERT_SECONDS)


def _singleton_job(jobs: WorkerJobs, job_name: str, lease: str, run: Callable[[], object]) -> Callable[[], None]:
    """The interval job: `run` on whichever worker holds the lease, with every failure kept inside."""

    def job() -> None:
        singleton.run_as_singleton(jobs.services, lease, jobs.worker_id, run)

    job.__name__ = job_name
    # Guarded here, not only by the scheduler: a side channel's failure must not end a --once run either.
    return guarded(job, action=lease, failures=jobs.services.write_failures)
