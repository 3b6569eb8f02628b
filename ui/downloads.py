"""CSV export of the filtered contacts, built only when the marketer clicks download."""

import csv
import io
from collections.abc import Callable

from core import db, queries
from ui.services import services

_DATES = ("enrolled_at", "unsubscribed_at", "suppressed_at")


def contacts_csv(where: queries.ContactFilter) -> Callable[[], bytes]:
    """A deferred CSV builder: Streamlit calls it on a worker thread, so it holds the engine, not st state."""
    engine = services().engine

    def build() -> bytes:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=queries.EXPORT_COLUMNS)
        writer.writeheader()
        with db.read_transaction(engine) as conn:
            for row in queries.export_rows(conn, where=where):
                writer.writerow({**row, **{k: queries.as_iso(row[k]) for k in _DATES}})
        return out.getvalue().encode("utf-8")

    return build
