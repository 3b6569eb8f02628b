"""`python -m core import CSV`: bulk-enrol an existing list, validating every row, dry run by default."""

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa

from core import db
from core.bootstrap import Services
from core.campaign import Segment
from core.csv_export import TEXT_COLUMNS, restored
from core.enrollments import SignupRequest
from core.erasure import erased_addresses
from core.errors import InvalidSignup, NurtureError
from core.intake import enroll_now
from core.sequencing import segment_for
from core.signups import SignupIn, parse_signup
from core.tables import contact_t

INT_COLUMNS = ("red_systems", "orange_systems", "yellow_systems", "green_systems")
# Plain ASCII digits only: "²" and "١" pass str.isdigit(), and int() refuses the first.
_INTEGER = re.compile(r"-?[0-9]+")
NOT_UTF8 = ('not UTF-8 text: re-save it as "CSV UTF-8" (Excel: Save As) or as Text CSV with the '
            "character set Unicode (UTF-8) (LibreOffice)")
# Marks a row with cells past the header's last column (csv.DictReader's own key for them; no header names it).
BEYOND_HEADER = None
CHUNK = 500  # addresses or hashes per lookup (one bound parameter each, sent as they are to the driver)


@dataclass
class ImportPlan:
    new: list[tuple[int, SignupIn]] = field(default_factory=list)
    known: list[tuple[int, str]] = field(default_factory=list)
    erased: list[tuple[int, str]] = field(default_factory=list)
    rejects: list[tuple[int, str]] = field(default_factory=list)

    @property
    def all_refused(self) -> bool:
        """Every row was rejected or refused: nothing in the file can be imported."""
        return bool(self.rejects or self.erased) and not (self.new or self.known)


def read_rows(lines: Iterable[str]) -> Iterable[tuple[int, dict]]:
    """CSV rows with their line numbers (the header is line 1); empty cells are absent fields.

    A file that cannot be read as UTF-8 CSV raises NurtureError saying why and where.
    """
    text = _TextLines(lines)
    # Strict: read leniently, a quote never closed takes the rest of the file into one cell, and
    # the rows after it are lost without a word.
    reader = csv.DictReader(text, strict=True)
    start = 1  # where the row being read begins, to name it when it cannot be read
    try:
        if not reader.fieldnames or "email" not in [_column(f) for f in reader.fieldnames]:
            raise InvalidSignup({"header": "the first line must name the columns, including 'email'"})
        start = reader.line_num + 1
        if twice := _repeated([_column(f) for f in reader.fieldnames]):
            # Each row is read as a dict, so one of the two cells would silently win over the other.
            raise InvalidSignup({"header": f"the first line names the column '{twice}' twice"})
        for row in reader:
            # Where the row starts: a quoted cell may run over several lines, and line_num is its last.
            yield reader.line_num - _line_breaks(row), _cleaned(row)
            start = reader.line_num + 1
    except UnicodeDecodeError:
        raise NurtureError(NOT_UTF8) from None
    except csv.Error as exc:  # e.g. a cell over csv.field_size_limit(), 131,072 characters, or an unclosed quote
        raise NurtureError(f"line {start}: not readable as CSV ({exc})") from None


class _TextLines:
    """The file's lines, counted (the reader's own count lags when it fails) and checked for NUL."""

    def __init__(self, lines: Iterable[str]):
        self._lines, self.count = iter(lines), 0

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.count += 1
        if "\x00" in line:  # UTF-16 without a byte order mark decodes as "UTF-8" full of NULs
            raise NurtureError(NOT_UTF8)
        return line


def _repeated(columns: list[str]) -> str | None:
    """The first column named twice (blank header cells, as spreadsheets leave them, do not count)."""
    seen = set()
    for column in filter(None, columns):
        if column in seen:
            return column
        seen.add(column)
    return None


def _line_breaks(row: dict) -> int:
    cells = [v for value in row.values() for v in (value if isinstance(value, list) else [value])]
    return sum(cell.count("\n") for cell in cells if isinstance(cell, str))


def _column(name: str) -> str:
    # Spreadsheets capitalise headers ("Email", "First_Name"); the columns are the webhook's field names.
    return name.strip().lower()


def _cleaned(row: dict) -> dict:
    cleaned = {_column(k): (v or "").strip() for k, v in row.items() if k and v not in (None, "")}
    if any(cell.strip() for cell in row.get(None) or []):  # cells past the header's last column
        cleaned[BEYOND_HEADER] = True
    for column in TEXT_COLUMNS:  # a file from `export` has formula-like cells quoted; take the quote off
        if column in cleaned:
            cleaned[column] = restored(cleaned[column])
    for column in INT_COLUMNS:
        if _INTEGER.fullmatch(cleaned.get(column, "")):
            cleaned[column] = int(cleaned[column])
    return cleaned


def plan_import(services: Services, lines: Iterable[str]) -> ImportPlan:
    """Validate every row; sort them into new contacts, already-known and erased addresses, and rejects."""
    plan, seen = ImportPlan(), set()
    for line, row in read_rows(lines):
        if row.pop(BEYOND_HEADER, False):
            plan.rejects.append((line, "the row has more cells than the header has columns (a comma in a cell "
                                       "without quotes around it?), so its cells may be under the wrong columns"))
            continue
        try:
            signup = parse_signup(row)
        except InvalidSignup as exc:
            plan.rejects.append((line, "; ".join(f"{k}: {v}" for k, v in exc.errors.items())))
            continue
        if problem := _segment_mismatch(row, signup):
            plan.rejects.append((line, problem))
            continue
        if signup.email in seen:
            plan.rejects.append((line, f"email: {signup.email} appears earlier in the file"))
            continue
        seen.add(signup.email)
        plan.new.append((line, signup))
    emails = [s.email for _, s in plan.new]
    with db.read_transaction(services.engine) as conn:
        known, erased = _known(conn, emails), erased_addresses(conn, emails, chunk=CHUNK)
    plan.known = [(line, s.email) for line, s in plan.new if s.email in known]
    plan.erased = [(line, s.email) for line, s in plan.new if s.email in erased]
    plan.new = [(line, s) for line, s in plan.new if s.email not in known | erased]
    return plan


def _segment_mismatch(row: dict, signup: SignupIn) -> str | None:
    """A `segment` column the counts do not give (a list without counts, say) would be silently
    replaced by the computed segment; the row is refused instead, saying what the counts give."""
    given = str(row.get("segment", "")).strip().upper()
    computed = segment_for(signup.red_systems, signup.orange_systems).value
    if not given or given == computed:
        return None
    if given not in {segment.value for segment in Segment}:  # not echoed: a cell may hold terminal escape codes
        return f"segment: must be CRITICAL, URGENT or OPTIMIZE (the counts give {computed}), or leave the column out"
    return (f"segment: {given} does not follow from red_systems and orange_systems, which give {computed}; "
            "add the counts, or leave the segment column out")


def _known(conn: sa.Connection, emails: list[str]) -> set[str]:
    # In chunks: PostgreSQL takes at most 65,535 parameters in one statement.
    return {email for start in range(0, len(emails), CHUNK)
            for email in conn.scalars(sa.select(contact_t.c.email)
                                      .where(contact_t.c.email.in_(emails[start:start + CHUNK])))}


def apply_import(services: Services, plan: ImportPlan, *, batch_size: int = 500) -> int:
    """Enroll the plan's new contacts in batches; returns how many were enrolled."""
    enrolled = 0
    for start in range(0, len(plan.new), batch_size):
        chunk = [SignupRequest(s, source="import", only_new=True) for _, s in plan.new[start:start + batch_size]]
        enrolled += sum(1 for r in enroll_now(services, chunk) if not r.duplicate)
    return enrolled
