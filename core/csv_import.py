"""`python -m core import CSV`: bulk-enrol an existing list, validating every row, dry run by default."""

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa

from core import db
from core.bootstrap import Services
from core.csv_export import TEXT_COLUMNS, restored
from core.enrollments import SignupRequest
from core.errors import InvalidSignup
from core.intake import enroll_now
from core.signups import SignupIn, parse_signup
from core.tables import contact_t

INT_COLUMNS = ("red_systems", "orange_systems", "yellow_systems", "green_systems")


@dataclass
class ImportPlan:
    new: list[tuple[int, SignupIn]] = field(default_factory=list)
    known: list[tuple[int, str]] = field(default_factory=list)
    rejects: list[tuple[int, str]] = field(default_factory=list)


def read_rows(lines: Iterable[str]) -> Iterable[tuple[int, dict]]:
    """CSV rows with their line numbers (the header is line 1); empty cells are absent fields."""
    reader = csv.DictReader(lines)
    if not reader.fieldnames or "email" not in [f.strip() for f in reader.fieldnames]:
        raise InvalidSignup({"header": "the first line must name the columns, including 'email'"})
    for row in reader:
        cleaned = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k and v not in (None, "")}
        for column in TEXT_COLUMNS:  # a file from `export` has formula-like cells quoted; take the quote off
            if column in cleaned:
                cleaned[column] = restored(cleaned[column])
        for column in INT_COLUMNS:
            if cleaned.get(column, "").lstrip("-").isdigit():
                cleaned[column] = int(cleaned[column])
        yield reader.line_num, cleaned


def plan_import(services: Services, lines: Iterable[str]) -> ImportPlan:
    """Validate every row; sort them into new contacts, already-known addresses and rejects."""
    plan, seen = ImportPlan(), set()
    for line, row in read_rows(lines):
        try:
            signup = parse_signup(row)
        except InvalidSignup as exc:
            plan.rejects.append((line, "; ".join(f"{k}: {v}" for k, v in exc.errors.items())))
            continue
        if signup.email in seen:
            plan.rejects.append((line, f"email: {signup.email} appears earlier in the file"))
            continue
        seen.add(signup.email)
        plan.new.append((line, signup))
    with db.read_transaction(services.engine) as conn:
        known = set(conn.scalars(sa.select(contact_t.c.email).where(
            contact_t.c.email.in_([s.email for _, s in plan.new])))) if plan.new else set()
    plan.known = [(line, s.email) for line, s in plan.new if s.email in known]
    plan.new = [(line, s) for line, s in plan.new if s.email not in known]
    return plan


def apply_import(services: Services, plan: ImportPlan, *, batch_size: int = 500) -> int:
    """Enroll the plan's new contacts in batches; returns how many were enrolled."""
    enrolled = 0
    for start in range(0, len(plan.new), batch_size):
        chunk = [SignupRequest(s, source="import") for _, s in plan.new[start:start + batch_size]]
        enrolled += sum(1 for r in enroll_now(services, chunk) if not r.duplicate)
    return enrolled
