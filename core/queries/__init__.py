"""The read model: every query the CLI, /health and the dashboard read through, one module per page.

All of it aggregates in SQL and pages on the server with LIMIT, with bound parameters only,
and runs alike on SQLite and PostgreSQL. Migration 0002 adds the indexes these queries use.
"""

from core.queries.audit import (actions_by_ids, audit_count, audit_page, latest_action, pending_actions,
                                pending_actions_for)
from core.queries.contacts import AUDIENCES, ContactFilter, contact_page, count_contacts
from core.queries.exports import EXPORT_COLUMNS, as_iso, export_rows, stats
from core.queries.overview import FUNNEL_STAGES, funnel, kpis, overview_data, signups_per_day
from core.queries.sends import LISTS, queue_counts, queue_length, queue_list
from core.queries.steps import STATES
from core.queries.system import SystemState, heartbeat, system_state
from core.queries.timeline import StepLine, contact_detail, humane, relative, steps_still_going, when

__all__ = [
    "AUDIENCES", "EXPORT_COLUMNS", "FUNNEL_STAGES", "LISTS", "STATES", "ContactFilter", "StepLine", "SystemState",
    "actions_by_ids", "as_iso", "audit_count", "audit_page", "contact_detail", "contact_page",
    "count_contacts", "export_rows", "funnel", "heartbeat", "humane", "kpis", "latest_action", "overview_data",
    "pending_actions", "pending_actions_for", "queue_counts", "queue_length", "queue_list", "relative", "signups_per_day", "stats", "steps_still_going", "system_state", "when",
]
