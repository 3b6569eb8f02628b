"""`make run`: the worker and the dashboard as child processes, stopped together on Ctrl-C."""

import signal
import subprocess
import sys
import time

from core.settings import load_settings


def _interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt


def run_all() -> int:
    settings = load_settings()  # fail fast, with one sentence, before starting anything
    # SIGTERM (a supervisor, `kill`) stops the children like Ctrl-C does, instead of orphaning
    # them; SIGINT is set explicitly because a shell starts background jobs with it ignored.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    python = sys.executable
    children = [
        subprocess.Popen([python, "scheduler.py"]),
        subprocess.Popen([python, "-m", "streamlit", "run", "dashboard.py",
                          "--server.address", settings.dashboard_host]),
    ]
    print(f"Nurture is running: API http://127.0.0.1:{settings.api_port}/health, "
          f"dashboard http://{settings.dashboard_host}:8501 (Ctrl-C stops both)", flush=True)
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
