"""tally: running counts the database keeps exact, so dashboard figures never scan the send table

At a million contacts (7 M sends) counting sends by status and step, the funnel's stages and
signups per day means walking millions of index entries on every page view. Instead, triggers
keep `tally(kind, bucket)` up to date inside the very transaction that changes a row:
- `status:<status>` per step, and `delivered` / `opened` / `clicked` per step, from send;
- `signups:<segment>` per UTC day (days since 1970-01-01), from enrollment.

A reader sums a kind over shards. On PostgreSQL each backend adds to its own shard
(its pid modulo SHARDS), so concurrent workers rarely wait on one counter row; statement-level
triggers with transition tables add one aggregated row per (kind, bucket) per statement.
SQLite has one writer at a time: one shard, row-level triggers.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SHARDS = 8
STAGES = ("delivered", "opened", "clicked")
EVENTS = ("insert", "update", "delete")


def _counts(table: str, alias: str, dialect: str) -> list[tuple[str, str, str]]:
    """What one row of `table` (named `alias`) counts towards: (kind, bucket, condition) SQL expressions."""
    if table == "send":
        return [(f"'status:' || {alias}.status", f"{alias}.step", "true"),
                *((f"'{stage}'", f"{alias}.step", f"{alias}.{stage}_at IS NOT NULL") for stage in STAGES)]
    day = (f"CAST(julianday({alias}.created_at) - 2440587.5 AS INTEGER)" if dialect == "sqlite"
           else f"(({alias}.created_at AT TIME ZONE 'UTC')::date - DATE '1970-01-01')")
    return [(f"'signups:' || {alias}.segment", day, "true")]


def _terms(table: str, alias: str, sign: str, dialect: str, source: str = "") -> list[str]:
    """One SELECT of (kind, bucket, d) per count a row contributes to.

    `alias` names the row (OLD or NEW in a row trigger); `source` is the FROM clause when the
    rows come from a table instead (a transition table, or the whole table for the backfill).
    """
    return [f"SELECT {kind} AS kind, {bucket} AS bucket, {sign}1 AS d{source} WHERE {condition}"
            for kind, bucket, condition in _counts(table, alias, dialect)]


def _add(changes: list[str], shard: str) -> str:
    """Add the net of `changes` to the tally, one upsert per (kind, bucket) that actually moved."""
    return (f"INSERT INTO tally (kind, bucket, shard, n) SELECT kind, bucket, {shard}, sum(d) "
            f"FROM ({' UNION ALL '.join(changes)}) AS changes GROUP BY kind, bucket HAVING sum(d) <> 0 "
            "ORDER BY kind, bucket "  # a fixed lock order: two transactions never wait on each other in a circle
            "ON CONFLICT (kind, bucket, shard) DO UPDATE SET n = tally.n + excluded.n")


def _row_changes(table: str, event: str, dialect: str) -> list[str]:
    changes = []
    if event in ("update", "delete"):
        changes += _terms(table, "OLD", "-", dialect)
    if event in ("insert", "update"):
        changes += _terms(table, "NEW", "", dialect)
    return changes


def _statement_changes(table: str, event: str) -> list[str]:
    """The same, over PostgreSQL's transition tables (old_rows, new_rows) of one statement."""
    changes = []
    if event in ("update", "delete"):
        changes += _terms(table, "r", "-", "postgresql", " FROM old_rows AS r")
    if event in ("insert", "update"):
        changes += _terms(table, "r", "", "postgresql", " FROM new_rows AS r")
    return changes


WATCHED = {"send": "status, step, delivered_at, opened_at, clicked_at", "enrollment": "segment, created_at"}


def _sqlite_triggers() -> None:
    for table, columns in WATCHED.items():
        # Inserts (seven sends per signup) are the hot path: one trigger per count, each a plain
        # upsert behind a WHEN the row must meet, so a new send runs one statement, not four.
        for n, (kind, bucket, condition) in enumerate(_counts(table, "NEW", "sqlite")):
            op.execute(f"CREATE TRIGGER tally_{table}_insert_{n} AFTER INSERT ON {table} WHEN {condition} BEGIN "
                       f"INSERT INTO tally (kind, bucket, shard, n) VALUES ({kind}, {bucket}, 0, 1) "
                       "ON CONFLICT (kind, bucket, shard) DO UPDATE SET n = tally.n + 1; END")
        for event in ("update", "delete"):
            on = f"UPDATE OF {columns}" if event == "update" else "DELETE"
            op.execute(f"CREATE TRIGGER tally_{table}_{event} AFTER {on} ON {table} BEGIN "
                       f"{_add(_row_changes(table, event, 'sqlite'), '0')}; END")


def _trigger_names(table: str, dialect: str) -> list[str]:
    if dialect == "sqlite":
        inserts = [f"tally_{table}_insert_{n}" for n in range(len(_counts(table, "NEW", dialect)))]
        # tally_<table>_insert: this revision's first form had one insert trigger, and databases keep it.
        return [*inserts, f"tally_{table}_insert", f"tally_{table}_update", f"tally_{table}_delete"]
    return [f"tally_{table}_{event}" for event in EVENTS]


def _postgresql_triggers() -> None:
    for table in WATCHED:
        for event in EVENTS:
            name = f"tally_{table}_{event}"
            op.execute(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                       f"{_add(_statement_changes(table, event), f'pg_backend_pid() % {SHARDS}')}; "
                       "RETURN NULL; END $$")
            referencing = {"insert": "NEW TABLE AS new_rows", "update": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
                           "delete": "OLD TABLE AS old_rows"}[event]
            op.execute(f"CREATE TRIGGER {name} AFTER {event.upper()} ON {table} REFERENCING {referencing} "
                       f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()")


def _backfill(dialect: str) -> None:
    for table in WATCHED:
        op.execute(_add(_terms(table, "r", "", dialect, f" FROM {table} AS r"), "0"))


def upgrade() -> None:
    op.create_table(
        "tally",
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "bucket", "shard"),
        sqlite_with_rowid=False,  # an upsert finds its row by the key alone
    )
    dialect = op.get_bind().dialect.name
    # Triggers first: creating them locks out writers until this migration commits, and the
    # backfill then counts every row committed before, so no row is missed or counted twice.
    if dialect == "sqlite":
        _sqlite_triggers()
    else:
        _postgresql_triggers()
    _backfill(dialect)
    # The Overview read its counts from these indexes; the tally answers now, and new sends and
    # status changes no longer have to update them.
    op.drop_index("ix_send_status_step", table_name="send")
    for stage in STAGES:
        op.drop_index(f"ix_send_{stage}_step", table_name="send")
    # (segment, created_at) serves every lookup by segment; this one only cost each signup a write.
    op.drop_index("ix_enrollment_segment", table_name="enrollment")


def downgrade() -> None:
    op.create_index("ix_enrollment_segment", "enrollment", ["segment"])
    op.create_index("ix_send_status_step", "send", ["status", "step"])
    for stage in STAGES:
        condition = sa.text(f"{stage}_at IS NOT NULL")  # a fixed column name from STAGES, never input
        op.create_index(f"ix_send_{stage}_step", "send", ["step", f"{stage}_at"], sqlite_where=condition,
                        postgresql_where=condition)
    dialect = op.get_bind().dialect.name
    for table in WATCHED:
        for name in _trigger_names(table, dialect):
            op.execute(f"DROP TRIGGER IF EXISTS {name}" + ("" if dialect == "sqlite" else f" ON {table}"))
            if dialect != "sqlite":
                op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    op.drop_table("tally")
