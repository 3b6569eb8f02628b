"""`make run`: the worker and the dashboard as child processes, stopped together on Ctrl-C."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from core.settings import load_settings

# The folder holding scheduler.py, dashboard.py and the `core` package.
PROJECT = Path(__file__).resolve().parents[1]


def _reachable(host: str) -> str:
    """An address to open for a server bound to `host` (one bound to every address answers on loopback)."""
    return "127.0.0.1" if host in {"", "0.0.0.0", "::"} else host


def _interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt


def run_all() -> int:
    # Run from the project folder, wherever the command was given, as `make run` and the systemd
    # units do: its .env, its data/ and its .streamlit/config.toml (headless, no error details,
    # no raw data export) then apply to all three processes alike.
    os.chdir(PROJECT)
    settings = load_settings()  # fail fast, with one sentence, before starting anything
    # SIGTERM (a supervisor, `kill`) stops the children like Ctrl-C does, instead of orphaning
    # them; SIGINT is set explicitly because a shell starts background jobs with it ignored.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    python = sys.executable
    children = [
        subprocess.Popen([python, "scheduler.py"]),
        subprocess.Popen([python, "-m", "streamlit", "run", "dashboard.py",
                          "--server.address", settings.dashboard_host, "--server.port", str(settings.dashboard_port)]),
    ]
    print(f"Nurture is running: API http://{_reachable(settings.api_host)}:{settings.api_port}/health, "
          f"dashboard http://{_reachable(settings.dashboard_host)}:{settings.dashboard_port} (Ctrl-C stops both)",
          flush=True)
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
    failed = [c for c in children if c.returncode not in (0, -signal.SIGTERM, -signal.SIGINT)]
    return 1 if failed else 0
