"""`make run`: the worker and the dashboard as child processes, stopped together on Ctrl-C."""

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from core.errors import ConfigError
from core.listening import listen
from core.settings import Settings, load_settings

# The folder holding scheduler.py, dashboard.py and the `core` package.
PROJECT = Path(__file__).resolve().parents[1]
# How long both children get to answer; Streamlit's first start on a slow machine takes a while.
STARTUP_SECONDS = 120
PROBE_INTERVAL = 0.3
# The probes go straight to our own children, never through an http_proxy from the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _reachable(host: str) -> str:
    """An address to open for a server bound to `host` (one bound to every address answers on loopback)."""
    return "127.0.0.1" if host in {"", "0.0.0.0", "::"} else host


def base_url(host: str, port: int) -> str:
    """Where to reach a server bound to host:port; an IPv6 address in brackets, so the printed URL works as typed."""
    address = _reachable(host)
    return f"http://[{address}]:{port}" if ":" in address else f"http://{address}:{port}"


class _StopSignals:
    """The stop signals as KeyboardInterrupt, held back while a child is being started.

    Popen forks, then waits for the exec: a signal raising in between left a running child that
    Popen never returned, so nothing recorded it and nothing stopped it (Streamlit outlived the
    runner). Held there, the signal is raised once the child is on record.
    """

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


_stop_signals = _StopSignals()


def _answers(url: str) -> bool:
    """Whether our server answers at `url`: /health says 200 or 503 (database down), Streamlit's says 200.

    A status, not just an open port: another program holding the port would accept the connection.
    """
    try:
        with _DIRECT.open(url, timeout=2) as response:
            return response.status == 200
    except urllib.error.HTTPError as exc:
        return exc.code == 503 and url.endswith("/health")
    except OSError:  # refused, reset or timed out: not listening yet
        return False


def _taken_port(settings: Settings) -> str | None:
    """Why a child could not take its port, in one sentence; None when both can.

    Checked before starting them: a port already served by another Nurture (a second `make run`, the
    systemd worker) answered the probes for the child that could not bind it, and "Nurture is running"
    was printed just before it failed."""
    for server, host, port, names in (
            ("The intake API", settings.api_host, settings.api_port, "API_HOST, API_PORT"),
            ("The dashboard", settings.dashboard_host, settings.dashboard_port, "DASHBOARD_HOST, DASHBOARD_PORT")):
        try:
            listen(host, port, server=server, settings_named=names, backlog=1).close()
        except ConfigError as exc:
            return str(exc)
    return None


def _wait_until_answering(children: dict[str, subprocess.Popen], probes: list[str]) -> bool:
    """True once every probe answers; False when a child exits first, or after STARTUP_SECONDS."""
    deadline = time.monotonic() + STARTUP_SECONDS
    waiting = list(probes)
    while waiting:
        exited = [name for name, child in children.items() if child.poll() is not None]
        if exited:
            print(f"nurture: the {' and the '.join(exited)} stopped while starting (the lines above say why); "
                  "stopping everything", file=sys.stderr, flush=True)
            return False
        if time.monotonic() > deadline:
            print(f"nurture: {', '.join(waiting)} did not answer within {STARTUP_SECONDS} s; stopping everything",
                  file=sys.stderr, flush=True)
            return False
        waiting = [url for url in waiting if not _answers(url)]
        if waiting:
            time.sleep(PROBE_INTERVAL)
    return True


def _start_children(settings: Settings, children: dict[str, subprocess.Popen]) -> None:
    """Start the worker and the dashboard, each recorded in `children` as soon as it exists (so a
    signal arriving between the two still stops the first)."""
    # Each child in a process group of its own: a terminal's Ctrl-C (or hang-up) reaches the whole
    # foreground group, and Streamlit, interrupted while still importing, printed a traceback of its
    # own. The runner alone hears the terminal and stops both children with SIGTERM.
    python = sys.executable
    commands = {"worker": [python, "scheduler.py"],
                "dashboard": [python, "-m", "streamlit", "run", "dashboard.py", "--server.address",
                              settings.dashboard_host, "--server.port", str(settings.dashboard_port)]}
    for name, command in commands.items():
        with _stop_signals.held():
            children[name] = subprocess.Popen(command, process_group=0)


def _stop(children: list[subprocess.Popen]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    try:
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
    except KeyboardInterrupt:  # Ctrl-C again while stopping: wait no longer
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()


def run_all() -> int:
    # Run from the project folder, wherever the command was given, as `make run` and the systemd
    # units do: its .env, its data/ and its .streamlit/config.toml (headless, no error details,
    # no raw data export) then apply to all three processes alike.
    os.chdir(PROJECT)
    settings = load_settings()  # fail fast, with one sentence, before starting anything
    if taken := _taken_port(settings):
        print(f"nurture: {taken}", file=sys.stderr, flush=True)
        return 2
    # SIGTERM (a supervisor, `kill`) and SIGHUP (the terminal closed) stop the children like Ctrl-C
    # does, instead of orphaning them in their own process groups; SIGINT is set explicitly because
    # a shell starts background jobs with it ignored.
    for stop_signal in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(stop_signal, _stop_signals.handle)
    api = f"{base_url(settings.api_host, settings.api_port)}/health"
    dashboard = base_url(settings.dashboard_host, settings.dashboard_port)
    children: dict[str, subprocess.Popen] = {}
    started = stopped_by_signal = False
    try:
        _start_children(settings, children)
        print(f"Nurture is starting: API {api}, dashboard {dashboard} ...", flush=True)
        started = _wait_until_answering(children, [api, f"{dashboard}/_stcore/health"])
        if started:
            print(f"Nurture is running: API {api}, dashboard {dashboard} (Ctrl-C stops both)", flush=True)
            if settings.dry_run:  # said where a newcomer looks first, not only in /health and the dashboard
                print("Dry run: no RESEND_API_KEY, so emails are recorded as sent and none leaves this machine.",
                      flush=True)
        while started and all(child.poll() is None for child in children.values()):
            time.sleep(0.5)
    except KeyboardInterrupt:
        stopped_by_signal = True
    finally:
        _stop(list(children.values()))
    failed = [c for c in children.values() if c.returncode not in (0, -signal.SIGTERM, -signal.SIGINT)]
    return 1 if failed or not (started or stopped_by_signal) else 0
