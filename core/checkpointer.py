"""Copy SQLite's write-ahead log back into the database file beside the intake writer, not in it.

A checkpoint copies the newest version of each page in the WAL into the database file and
syncs it to disk. Left to SQLite, it runs inside whichever commit pushes the log past 1,000
pages, so every few hundred signups one batch waits 20–40 ms on that sync, and so does each
request in it: that stall set the webhook's p99. Here a thread of its own runs a PASSIVE
checkpoint (it never blocks writers or readers) shortly after commits, while the writer
answers its requests and gathers the next batch. The log then rarely reaches the threshold,
and SQLite's own checkpoint stays as the backstop when it does.
"""

import logging
import threading

from sqlalchemy.engine import Engine

from core import db
from core.errors import first_line

log = logging.getLogger(__name__)
# Commits this close together share one checkpoint and its syncs. Busy intake takes about
# half a second to fill the 1,000-page log, so the copy stays well ahead of SQLite's own.
SETTLE_SECONDS = 0.02
RETRY_AFTER_FAILURE_SECONDS = 1.0


class WalCheckpointer:
    """Call `nudge()` after each commit; does nothing unless the engine is a SQLite file."""

    def __init__(self, engine: Engine, *, settle_seconds: float = SETTLE_SECONDS):
        self._engine = engine
        self._settle = settle_seconds
        self._pending = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.enabled = engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:")
        self.checkpoints = 0
        self._failing = False

    def start(self) -> None:
        if self.enabled and self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="wal-checkpointer", daemon=True)
            self._thread.start()

    def nudge(self) -> None:
        """A commit happened: a checkpoint follows within SETTLE_SECONDS."""
        if self._thread is not None:
            self._pending.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Run a last checkpoint of whatever is pending, then end the thread (waiting `timeout` s at most:
        a PASSIVE checkpoint never waits on locks, and SQLite checkpoints again when next opened)."""
        if self._thread is not None:
            self._stopping.set()
            self._pending.set()
            self._thread.join(timeout=timeout)
            self._thread = None

    def _run(self) -> None:
        while True:
            self._pending.wait()
            stopping = self._stopping.wait(self._settle)
            self._pending.clear()
            if not self._checkpoint() and not stopping:
                self._stopping.wait(RETRY_AFTER_FAILURE_SECONDS)  # don't spin on a broken database
            if stopping:
                return

    def _checkpoint(self) -> bool:
        try:
            with self._engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").all()
        except Exception as exc:  # never fatal: SQLite's commit-time checkpoint still runs
            # Once per run of failures: a database that cannot be written (a read-only file, a full disk) fails
            # every checkpoint, and its cause is already reported where writes fail. A traceback only for the
            # unexpected, not for the database's own trouble.
            if not self._failing:
                log.warning("background WAL checkpoint failed: %s", first_line(exc),
                            exc_info=not db.storage_unavailable(exc), extra={"action": "checkpoint"})
            self._failing = True
            return False
        self._failing = False
        self.checkpoints += 1
        return True
