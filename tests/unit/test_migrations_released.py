"""Released migrations are never edited: a database records only a revision's name, so one that ran an
earlier form of it is never brought up to date. Three revisions once changed in place, and 0010 had to
repair the databases they left behind. A change of schema is a new revision; this test makes editing
an old one a deliberate act (update its fingerprint here, and say in the commit why no database can
be affected)."""

import hashlib
from pathlib import Path

VERSIONS = Path(__file__).resolve().parents[2] / "core" / "migrations" / "versions"
# The first 16 hex digits of each file's SHA-256. A new revision adds its line.
RELEASED = {
    "0001_initial_schema.py": "dbe00cbc6afb65ed",
    "0002_dashboard_indexes.py": "f0901830859e781c",
    "0003_notion.py": "aa001284845f8a4a",
    "0004_lean_send_indexes.py": "ba6a6e66c7b265b1",
    "0005_tally.py": "be4db1e24b8480de",
    "0006_partial_indexes.py": "d65d5d0060792016",
    "0007_provider_event_lookup.py": "2d59f7005e6a9f68",
    "0008_batch_retry_state.py": "815e77845f1a2deb",
    "0009_erasure_hold.py": "635b045413d33e10",
    "0010_repair_edited_revisions.py": "7351b085030f24e9",
    "0011_tally_signup_day.py": "da5a3fa113481094",
}


def _fingerprint(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def test_every_migration_file_is_a_released_revision_as_it_was_released():
    found = {path.name: _fingerprint(path) for path in sorted(VERSIONS.glob("*.py"))}
    assert found == RELEASED, ("a migration was edited, added or removed: a new revision is the way to change "
                               "the schema, and a new one adds its fingerprint to RELEASED")
