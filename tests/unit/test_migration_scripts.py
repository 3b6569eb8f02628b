"""core.db reads the revisions the migration scripts declare without alembic, so that a command on an
up-to-date database need not import it; what it reads must be what alembic itself would apply."""

from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

from core import db


def _alembic_view(script_location: Path) -> tuple[set[str], set[str]]:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    scripts = ScriptDirectory.from_config(cfg)
    return {script.revision for script in scripts.walk_revisions()}, set(scripts.get_heads())


def test_the_released_scripts_give_alembics_revisions_and_head():
    scripts = db.MigrationScripts.read()
    assert (set(scripts.known), scripts.heads) == _alembic_view(db.MIGRATIONS)


def _script(folder: Path, revision: str, down_revision, annotated: bool = False) -> None:
    kind = ": str | None" if annotated else ""
    (folder / f"{revision}_step.py").write_text(
        f'"""{revision}"""\nfrom alembic import op\n\nrevision{kind} = {revision!r}\n'
        f"down_revision{kind} = {down_revision!r}\n\n\ndef upgrade() -> None:\n    pass\n")


def test_branches_and_merges_give_the_heads_alembic_gives(tmp_path):
    versions = tmp_path / "versions"
    versions.mkdir()
    _script(versions, "a1", None)
    _script(versions, "b1", "a1")
    _script(versions, "c1", "a1", annotated=True)  # the newer script template annotates the names
    _script(versions, "d1", ("b1", "c1"))  # a merge
    _script(versions, "e1", "d1")
    _script(versions, "f1", "d1")  # two heads again
    (versions / "__init__.py").write_text("")

    scripts = db.MigrationScripts.read(versions)

    assert (set(scripts.known), scripts.heads) == _alembic_view(tmp_path) == (
        {"a1", "b1", "c1", "d1", "e1", "f1"}, {"e1", "f1"})
