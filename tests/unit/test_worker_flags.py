"""`python scheduler.py` flags: a bad one is a usage error (exit 2), never a traceback later."""

import pytest

from scheduler import parse_args


@pytest.mark.parametrize("now", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"])
def test_a_now_at_the_edge_of_the_calendar_is_refused_as_a_usage_error(now, capsys):
    # The worker computes instants days and weeks either side of its clock; there they overflow.
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--once", "--now", now])
    assert exit_.value.code == 2
    assert "--now" in capsys.readouterr().err


def test_a_now_in_a_plausible_year_is_taken_as_given():
    assert parse_args(["--now", "2025-12-01T09:00:00Z"]).now.isoformat() == "2025-12-01T09:00:00+00:00"


class _InterruptedImport:
    """A finder that stands for Ctrl-C arriving while scheduler.py is still importing the worker."""

    def find_spec(self, name, path=None, target=None):
        if name == "core.entrypoints":
            raise KeyboardInterrupt
        return None


def test_ctrl_c_while_the_worker_is_still_importing_exits_130_without_a_traceback(monkeypatch):
    import sys

    import scheduler

    monkeypatch.delitem(sys.modules, "core.entrypoints", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_InterruptedImport(), *sys.meta_path])

    assert scheduler.main(["--once"]) == 130
