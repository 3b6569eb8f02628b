"""`python -m core notion check`: compare the Email Sequence database's columns with what the mirror writes."""

from dataclasses import dataclass, field

from core.notion.port import NotionMirror
from core.notion.properties import BUSINESS, EXPECTED, SELECT_OPTIONS, TITLE


@dataclass(frozen=True)
class Problem:
    name: str
    expected: str
    actual: str | None  # None: the column is missing

    def __str__(self) -> str:
        if self.actual is None:
            return f"missing   {self.name} ({self.expected})"
        return f"mistyped  {self.name} is {self.actual}, expected {self.expected}"


@dataclass(frozen=True)
class SchemaReport:
    problems: list[Problem]
    created: list[str] = field(default_factory=list)
    title_column: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        """The report for a terminal: what was added, then every remaining problem in one list."""
        out = [f"added     {name}" for name in self.created]
        if self.ok:
            return [*out, "The Email Sequence database has every column the mirror needs."]
        out.append(f"The Email Sequence database has {len(self.problems)} problem(s):")
        out += [f"  - {p}" for p in self.problems]
        if any(p.name == TITLE and p.actual is None for p in self.problems) and self.title_column:
            out.append(f"Its title column is called {self.title_column!r}: rename it to {TITLE!r} in Notion.")
        if any(p.actual is None and p.expected != "title" for p in self.problems):
            out.append("Run `python -m core notion check --create-missing` to add the missing columns.")
        if any(p.actual is not None for p in self.problems):
            out.append("Change the type of mistyped columns in Notion (the mirror never changes existing columns).")
        return out


def expected_schema(with_business: bool) -> dict[str, str]:
    """Every column the mirror writes or reads, with the "Business" relation when BusinessX is configured."""
    return {**EXPECTED, **({BUSINESS: "relation"} if with_business else {})}


def compare(expected: dict[str, str], actual: dict[str, str]) -> list[Problem]:
    """Every expected column that is missing or has another type, in the expected order."""
    return [Problem(name, kind, actual.get(name)) for name, kind in expected.items() if actual.get(name) != kind]


def definition(kind: str, name: str, business_source_id: str | None) -> dict:
    """The data source property configuration that creates a column of this type."""
    if kind == "select":
        return {"select": {"options": [{"name": n, "color": c} for n, c in SELECT_OPTIONS.get(name, [])]}}
    if kind == "relation":
        return {"relation": {"data_source_id": business_source_id, "type": "single_property", "single_property": {}}}
    return {kind: {}}


def check_schema(mirror: NotionMirror, *, create_missing: bool = False) -> SchemaReport:
    """Read the schema, optionally add the missing columns (never the title, never a type change), and report."""
    actual = mirror.schema(refresh=True)
    business = mirror.business_source_id()
    expected = expected_schema(business is not None)
    problems = compare(expected, actual)
    created: list[str] = []
    addable = [p for p in problems if p.actual is None and p.expected != "title"]
    if create_missing and addable:
        mirror.add_properties({p.name: definition(p.expected, p.name, business) for p in addable})
        created = [p.name for p in addable]
        actual = mirror.schema(refresh=True)
        problems = compare(expected, actual)
    title = next((name for name, kind in actual.items() if kind == "title"), None)
    return SchemaReport(problems, created, title)
