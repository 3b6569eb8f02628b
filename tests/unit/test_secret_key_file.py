"""The generated SECRET_KEY file: one key per data folder, even when several processes start at once."""

import multiprocessing
import stat

from core.bootstrap import resolve_secret_key
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
