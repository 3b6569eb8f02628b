"""tally: on SQLite a signup counts on the UTC day it was made, up to that day's last microsecond

0005's SQLite triggers took a signup's day from julianday(created_at), which rounds the time to
the millisecond: an enrollment created in a day's last half millisecond (23:59:59.9995 or later)
was counted on the next day, unlike the rows themselves and unlike PostgreSQL. The day now comes
from the date alone (the first ten characters of the text SQLAlchemy stores, naive UTC), and the
signups already counted are counted again. PostgreSQL's triggers were right and are left alone.

Revision ID: 0011
Revises: 0010
"""
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

EXACT_DAY = "CAST(julianday(substr({row}.created_at, 1, 10)) - 2440587.5 AS INTEGER)"
ROUNDED_DAY = "CAST(julianday({row}.created_at) - 2440587.5 AS INTEGER)"  # 0005's
# 0005's names; tally_enrollment_insert is the single insert trigger of its first form, which databases keep.
TRIGGERS = ("tally_enrollment_insert_0", "tally_enrollment_insert", "tally_enrollment_update",
            "tally_enrollment_delete")
UPSERT = "ON CONFLICT (kind, bucket, shard) DO UPDATE SET n = tally.n + excluded.n"


def _signups(row: str, day: str, sign: str, source: str = "") -> str:
    """The count one enrollment (`row`: OLD, NEW, or the alias `source` names) adds to, as (kind, bucket, d)."""
    return f"SELECT 'signups:' || {row}.segment AS kind, {day.format(row=row)} AS bucket, {sign}1 AS d{source}"


def _add(changes: list[str]) -> str:
    """Add the net of `changes` to SQLite's one shard, as 0005's triggers do."""
    return (f"INSERT INTO tally (kind, bucket, shard, n) SELECT kind, bucket, 0, sum(d) "
            f"FROM ({' UNION ALL '.join(changes)}) AS changes GROUP BY kind, bucket HAVING sum(d) <> 0 "
            f"ORDER BY kind, bucket {UPSERT}")


def _count_signups_by(day: str) -> None:
    """Replace the enrollment triggers with ones taking the day so, and count every signup again by it."""
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.execute(f"CREATE TRIGGER tally_enrollment_insert_0 AFTER INSERT ON enrollment BEGIN "
               f"INSERT INTO tally (kind, bucket, shard, n) "
               f"VALUES ('signups:' || NEW.segment, {day.format(row='NEW')}, 0, 1) {UPSERT}; END")
    op.execute("CREATE TRIGGER tally_enrollment_update AFTER UPDATE OF segment, created_at ON enrollment BEGIN "
               f"{_add([_signups('OLD', day, '-'), _signups('NEW', day, '')])}; END")
    op.execute(f"CREATE TRIGGER tally_enrollment_delete AFTER DELETE ON enrollment BEGIN "
               f"{_add([_signups('OLD', day, '-')])}; END")
    # SQLite has one writer, and this migration is it: no signup comes between the triggers and the recount.
    op.execute("DELETE FROM tally WHERE kind LIKE 'signups:%'")
    op.execute(_add([_signups("r", day, "", " FROM enrollment AS r")]))


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _count_signups_by(EXACT_DAY)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _count_signups_by(ROUNDED_DAY)
