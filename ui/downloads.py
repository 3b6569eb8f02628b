"""CSV export of the filtered contacts, built only when the marketer clicks download."""

import io
from collections.abc import Callable

from core import csv_export, db, queries
from ui.services import services


def contacts_csv(where: queries.ContactFilter) -> Callable[[], bytes]:
    """A deferred CSV builder: Streamlit calls it on a worker thread, so it holds the engine, not st state."""
    engine = services().engine

    def build() -> bytes:
        out = io.StringIO()
        with db.read_transaction(engine) as conn:
            csv_export.write_contacts(out, queries.export_rows(conn, where=where))
        # With a byte-order mark: Excel, where a marketer opens this, reads a file without one in the
        # local code page and garbles every name beyond ASCII (Zoë, Łódź). `python -m core import` accepts it.
        return out.getvalue().encode("utf-8-sig")

    return build
