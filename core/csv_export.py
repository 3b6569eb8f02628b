"""The contacts CSV of `python -m core export` and the dashboard's download, safe to open in a spreadsheet."""

import csv
from collections.abc import Iterable
from typing import TextIO

from core.queries import EXPORT_COLUMNS, as_iso

# What people typed into a form. Only these are neutralised: every other column (dates, segment,
# statuses, is_test) is written by Nurture itself, never starts with a formula character, and must
# stay exactly as written for whatever reads the file next.
TEXT_COLUMNS = ("email", "first_name", "business_name")
DATE_COLUMNS = ("enrolled_at", "unsubscribed_at", "suppressed_at")
# A spreadsheet reads a cell starting with one of these as a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralised(text: str | None) -> str | None:
    """`text` with a leading single quote if a spreadsheet would otherwise run it as a formula."""
    return f"'{text}" if text and text.startswith(FORMULA_STARTS) else text


def restored(text: str) -> str:
    """Undo `neutralised`, so an exported file imports as the addresses and names it came from."""
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA_STARTS) else text


def write_contacts(out: TextIO, rows: Iterable[dict]) -> int:
    """Write the header and `rows` (from queries.export_rows) to `out`; returns how many contacts."""
    writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS)
    writer.writeheader()
    count = 0
    for count, row in enumerate(rows, start=1):
        writer.writerow({**row, **{k: as_iso(row[k]) for k in DATE_COLUMNS},
                         **{k: neutralised(row[k]) for k in TEXT_COLUMNS}})
    return count
