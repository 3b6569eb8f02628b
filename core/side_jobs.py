"""The side-channel jobs a worker runs: the Notion mirror and Discord alerts, each only when configured.

Both are guarded: whatever goes wrong in a side channel is logged and never reaches the
scheduler or a `--once` run, so it can never stop or delay the dispatch job.
"""

import logging
from collections.abc import Callable

from core.alerts import AlertService
from core.discord import DiscordWebhook
from core.notion.client import notion_from_settings
from core.notion.sync import NotionSync
from core.worker import WorkerJobs

log = logging.getLogger(__name__)
SYNC_SECONDS = 2.0
ALERT_SECONDS = 2.0


def register_side_jobs(jobs: WorkerJobs) -> None:
    """Add the Notion sync and the Discord alert jobs for whichever of the two is configured."""
    settings = jobs.services.settings
    if settings.notion_configured:
        mirror = NotionSync(jobs.services, notion_from_settings(settings), jobs.worker_id)

        def sync_notion_mirror() -> None:
            _guarded(mirror.run_pass, "notion_sync")

        jobs.add(sync_notion_mirror, SYNC_SECONDS)
    if settings.discord_configured:
        alerts = AlertService(jobs.services, DiscordWebhook(settings.discord_webhook_url), jobs.worker_id)

        def post_discord_alerts() -> None:
            _guarded(alerts.run_pass, "discord_alerts")

        jobs.add(post_discord_alerts, ALERT_SECONDS)


def _guarded(run: Callable[[], object], action: str) -> None:
    try:
        run()
    except Exception:  # a side channel's bug must not take the worker (or its --once run) down
        log.exception("%s job failed", action, extra={"action": action})
