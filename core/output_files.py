"""Files the CLI writes (`export -o`): never over the SQLite database, never left half-written."""

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from sqlalchemy.engine import make_url

from core.errors import NurtureError, UsageError

SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")
SECRET_KEY_FILE = "secret_key"  # in DATA_DIR: the key generated for local use (core.bootstrap)


def refuse_database_files(target: Path, database_url: str) -> None:
    """Refuse a target that is the SQLite database or one of its journal files, however it is spelt."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return
    database = Path(url.database).resolve()
    if target.resolve() in {Path(f"{database}{suffix}") for suffix in SQLITE_COMPANIONS}:
        raise UsageError(f"refusing to write {target}: that would overwrite the database {database}; "
                         "choose another file name")


def refuse_secret_key_file(target: Path, data_dir: str) -> None:
    """Refuse the key generated into DATA_DIR: written over, every unsubscribe link already sent stops working."""
    key_file = (Path(data_dir) / SECRET_KEY_FILE).resolve()
    if target.resolve() == key_file:
        raise UsageError(f"refusing to write {target}: that would overwrite the secret key {key_file}, which signs "
                         "the unsubscribe links already sent; choose another file name")


def broken_link(path: Path) -> str | None:
    """Why a folder path cannot be used when it is a symbolic link to nothing (a volume not mounted), else None."""
    if path.is_symlink() and not path.exists():
        return f"it is a link to {os.readlink(path)}, which does not exist"
    return None


def refuse_planted_links(target: Path) -> None:
    """Refuse a path through a symbolic link that another user planted in a shared folder such as /tmp.

    The kernel would not follow it (fs.protected_symlinks), but `replacing` reads links to find the
    file to rename over: someone else's /tmp/contacts.csv -> ~/.ssh/authorized_keys would otherwise
    have an export written over the file it names. The kernel's rule: in a sticky, world-writable
    folder, only a link owned by us or by the folder's owner is followed.
    """
    path = target.absolute()
    for depth in range(1, len(path.parts)):
        link = Path(*path.parts[:depth + 1])
        if not link.is_symlink():
            continue
        folder, owner = link.parent.stat(), link.lstat().st_uid
        shared = folder.st_mode & (stat.S_ISVTX | stat.S_IWOTH) == stat.S_ISVTX | stat.S_IWOTH
        if shared and owner not in (os.geteuid(), folder.st_uid):
            raise UsageError(f"refusing to write {target}: {link} is a link that another user made in a shared "
                             "folder, so it may point at a file of yours; choose another file name")


@contextmanager
def replacing(target: Path) -> Iterator[TextIO]:
    """A UTF-8 text file that appears at `target` only once the block has finished without error.

    It is written beside the target under a temporary name and renamed over it at the end, so a
    failed export leaves no half-written file and any earlier file intact. Devices and pipes
    (/dev/stdout, a FIFO) cannot be renamed over, so they are written directly.
    """
    try:
        refuse_planted_links(target)
        if target.exists() and not target.is_file():  # following links: /dev/stdout is a pipe or a terminal
            with open(target, "w", newline="", encoding="utf-8") as out:  # a folder fails here, with its reason
                yield out
            return
        real = target.resolve()  # through a symbolic link, to replace the file it points at
        if not real.parent.is_dir():
            raise NurtureError(f"cannot write {target}: there is no folder {target.parent}")
        fd, partial = tempfile.mkstemp(dir=real.parent, prefix=f".{real.name}.", suffix=".partial")
        try:
            os.fchmod(fd, mode_for(real))
            with open(fd, "w", newline="", encoding="utf-8") as out:
                yield out
                out.flush()
                os.fsync(out.fileno())  # the rename must not land before the data does
            os.replace(partial, real)
        finally:
            Path(partial).unlink(missing_ok=True)
    except OSError as exc:
        exc.filename, exc.filename2 = str(target), None  # the name the user gave, not the temporary one
        raise


# What a new export or backup may be read by: its owner only. Both hold every contact's address and
# name, and a umask of 022 (the usual one) would have let every account on the host read them.
PRIVATE = 0o600


def mode_for(path: Path) -> int:
    """An existing file keeps its permissions (someone chose them); a new one is private to its owner."""
    if path.exists():
        return path.stat().st_mode & 0o777
    return PRIVATE
