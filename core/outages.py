"""The note a side channel's worker job keeps while the channel as a whole is paused (bad token, a
deleted webhook, the service down), where Settings and /health read it (core/side_status.py)."""

from core import db, switches
from core.bootstrap import Services
from core.side_status import OUTAGE_KEY


class OutageNote:
    """Shows and clears one channel's outage, writing only when that changes what is shown."""

    def __init__(self, services: Services, channel: str, actor: str):
        self._services, self._key, self._actor = services, OUTAGE_KEY.format(channel=channel), actor
        self._shown: bool | None = None  # None until this process wrote it: an earlier one may have left a note

    def show(self, reason: str) -> None:
        self._write(reason)

    def clear(self) -> None:
        if self._shown is not False:
            self._write(None)

    def _write(self, reason: str | None) -> None:
        with db.write_transaction(self._services.engine) as conn:
            switches.set_value(conn, self._key, (reason or "")[:2000], actor=self._actor, now=self._services.clock())
        self._shown = reason is not None
