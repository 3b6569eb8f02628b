"""output_files: an export never overwrites the database and never leaves a half-written file."""

import os
from pathlib import Path

import pytest

from core.errors import NurtureError, UsageError
from core.output_files import refuse_database_files, replacing


def test_a_failed_write_leaves_the_earlier_file_as_it_was_and_nothing_beside_it(tmp_path):
    target = tmp_path / "contacts.csv"
    target.write_text("yesterday's export\n")
    with pytest.raises(RuntimeError), replacing(target) as out:
        out.write("half of today's")
        raise RuntimeError("the database went away")
    assert target.read_text() == "yesterday's export\n"
    assert os.listdir(tmp_path) == ["contacts.csv"]


def test_a_finished_write_replaces_the_file_and_keeps_its_permissions(tmp_path):
    target = tmp_path / "contacts.csv"
    target.write_text("old\n")
    target.chmod(0o640)
    with replacing(target) as out:
        out.write("new\n")
    assert target.read_text() == "new\n"
    assert target.stat().st_mode & 0o777 == 0o640


def test_a_new_file_is_readable_by_its_owner_only_whatever_the_umask(tmp_path):
    old = os.umask(0o022)  # the usual umask, which leaves new files readable by every account
    try:
        with replacing(tmp_path / "contacts.csv") as out:
            out.write("email,first_name\n")
    finally:
        os.umask(old)
    assert (tmp_path / "contacts.csv").stat().st_mode & 0o777 == 0o600


def test_writing_through_a_link_replaces_the_file_it_points_at(tmp_path):
    (tmp_path / "real.csv").write_text("old\n")
    (tmp_path / "link.csv").symlink_to(tmp_path / "real.csv")
    with replacing(tmp_path / "link.csv") as out:
        out.write("new\n")
    assert (tmp_path / "link.csv").is_symlink() and (tmp_path / "real.csv").read_text() == "new\n"


SOMEONE_ELSE = 54321  # a uid that owns nothing here


@pytest.mark.skipif(os.geteuid() != 0, reason="making a link owned by another user needs root")
@pytest.mark.parametrize(("planted", "points_at", "given"), [
    ("contacts.csv", "authorized_keys", "contacts.csv"),  # a link to one of our files
    ("exports", "private", "exports/contacts.csv"),  # a link to one of our folders
])
def test_a_link_another_user_planted_in_a_shared_folder_is_refused(tmp_path, planted, points_at, given):
    shared, home = tmp_path / "tmp", tmp_path / "home"
    shared.mkdir()
    shared.chmod(0o1777)  # sticky and world-writable, as /tmp is
    home.mkdir()
    (home / "authorized_keys").write_text("ssh-ed25519 AAAA\n")
    (home / "private").mkdir()
    (home / "private" / "contacts.csv").write_text("mine\n")
    (shared / planted).symlink_to(home / points_at)
    os.lchown(shared / planted, SOMEONE_ELSE, SOMEONE_ELSE)
    with pytest.raises(UsageError, match="another user"), replacing(shared / given) as out:
        out.write("email\n")
    assert (home / "authorized_keys").read_text() == "ssh-ed25519 AAAA\n"
    assert (home / "private" / "contacts.csv").read_text() == "mine\n"


def test_our_own_link_in_a_shared_folder_is_still_followed(tmp_path):
    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    (tmp_path / "real.csv").write_text("old\n")
    (shared / "link.csv").symlink_to(tmp_path / "real.csv")
    with replacing(shared / "link.csv") as out:
        out.write("new\n")
    assert (tmp_path / "real.csv").read_text() == "new\n"


def test_a_device_is_written_directly_and_its_error_names_the_path_given():
    with pytest.raises(OSError) as failed, replacing(Path("/dev/full")) as out:
        out.write("x" * 100_000)
    assert failed.value.filename == "/dev/full" and failed.value.strerror == "No space left on device"


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(NurtureError, match="there is no folder"), replacing(tmp_path / "nope" / "x.csv"):
        pass


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm", "-journal"])
def test_the_sqlite_database_and_its_journal_files_are_refused(tmp_path, suffix):
    with pytest.raises(UsageError, match="would overwrite the database"):
        refuse_database_files(tmp_path / f"nurture.db{suffix}", f"sqlite:///{tmp_path}/nurture.db")


def test_other_files_and_other_databases_are_allowed(tmp_path):
    refuse_database_files(tmp_path / "nurture.db.csv", f"sqlite:///{tmp_path}/nurture.db")
    refuse_database_files(tmp_path / "nurture.db", "postgresql+psycopg://u@h/nurture")
    refuse_database_files(tmp_path / "x.csv", "sqlite://")
