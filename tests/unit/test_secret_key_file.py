"""The generated SECRET_KEY file: one key per data folder, even when several processes start at once."""

import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from core.bootstrap import resolve_secret_key
from core.db import create_db_engine
from core.errors import ConfigError
from core.settings import Settings


def _key_for(data_dir: str) -> str:
    return resolve_secret_key(Settings(_env_file=None, data_dir=data_dir, secret_key=""))


def test_a_configured_secret_key_wins(tmp_path):
    assert resolve_secret_key(Settings(_env_file=None, data_dir=str(tmp_path), secret_key="s" * 40)) == "s" * 40
    assert not (tmp_path / "secret_key").exists()


def test_the_generated_key_is_private_and_kept(tmp_path):
    first = _key_for(str(tmp_path))
    assert len(first) >= 32
    assert _key_for(str(tmp_path)) == first
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]  # no scratch file left behind


def test_processes_starting_together_agree_on_one_complete_key(tmp_path):
    # uvicorn --workers N on a fresh data folder: every process must end up with the same, non-empty key.
    context = multiprocessing.get_context("spawn")
    with context.Pool(6) as pool:
        for round_ in range(10):
            folder = tmp_path / f"round-{round_}"
            keys = pool.map(_key_for, [str(folder)] * 6)
            assert len(set(keys)) == 1 and keys[0], keys
            assert [p.name for p in folder.iterdir()] == ["secret_key"]


def _refusal(data_dir) -> str:
    with pytest.raises(ConfigError) as caught:
        _key_for(str(data_dir))
    message = str(caught.value)
    assert "\n" not in message and message.endswith(".") and caught.value.__cause__ is None
    return message


def test_a_data_dir_that_is_a_file_is_refused_naming_it(tmp_path):
    (tmp_path / "data").write_text("not a folder")
    assert _refusal(tmp_path / "data") == f"DATA_DIR {tmp_path / 'data'} is a file, not a folder."


def test_a_secret_key_path_that_is_a_folder_is_refused_naming_it(tmp_path):
    (tmp_path / "secret_key").mkdir()
    message = _refusal(tmp_path)
    assert message.startswith(f"DATA_DIR {tmp_path} ") and str(tmp_path / "secret_key") in message


def test_an_unwritable_data_dir_is_refused_naming_it(tmp_path):
    if os.geteuid() == 0:  # root may write anywhere a mode allows, but not into sysfs
        assert _refusal(Path("/sys/nurture-data")).startswith("DATA_DIR /sys/nurture-data ")
        return
    tmp_path.chmod(0o500)
    try:
        assert _refusal(tmp_path / "data").startswith(f"DATA_DIR {tmp_path / 'data'} ")
    finally:
        tmp_path.chmod(0o700)


@pytest.mark.parametrize("content", ["", "  \n", "short-key", "\udcff"])
def test_an_empty_or_short_key_file_is_refused_rather_than_signing_forgeable_tokens(tmp_path, content):
    (tmp_path / "secret_key").write_text(content, encoding="utf-8", errors="surrogateescape")
    assert "SECRET_KEY" in _refusal(tmp_path) and "DATA_DIR" in _refusal(tmp_path)
    kept = (tmp_path / "secret_key").read_text(encoding="utf-8", errors="surrogateescape")
    assert kept == content  # left for a person to look at


def test_data_folders_it_creates_are_private_and_one_that_exists_keeps_its_mode(tmp_path):
    # They hold the database, this key and backups: with the usual umask 022 every account could list and read them.
    previous = os.umask(0o022)
    try:
        _key_for(str(tmp_path / "fresh"))
        create_db_engine(f"sqlite:///{tmp_path}/database/nurture.db").dispose()
        (tmp_path / "shared").mkdir(mode=0o750)
        _key_for(str(tmp_path / "shared"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "fresh").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "database").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "shared").stat().st_mode) == 0o750  # the operator's choice (systemd's UMask)
