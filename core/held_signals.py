"""Stop signals as KeyboardInterrupt, held back while the program is in the middle of something.

Raised at just any moment, Ctrl-C can land inside work that must not be cut in two, such as a
child process being started by `make run`'s runner. Held there, the signal is raised as soon as
that work is over.
"""

from contextlib import contextmanager


class HeldSignals:
    """Install `handle` for the stop signals; wrap the work that must not be interrupted in `held()`."""

    def __init__(self):
        self._holding = False
        self._pending = False

    def handle(self, _signum, _frame) -> None:
        if self._holding:
            self._pending = True
        else:
            raise KeyboardInterrupt

    @contextmanager
    def held(self):
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
        if self._pending:
            self._pending = False
            raise KeyboardInterrupt
