"""`python -m core run` (what `make run` starts): both children come up, and a signal to the parent stops them all."""

import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core.runner import STARTUP_SECONDS, _stop
from core.settings import Settings
from tests.e2e.processes import alive, answers, free_port, healthy, wait_for

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e
# The runner itself waits STARTUP_SECONDS for both children: a test that gives up sooner fails on a slow
# machine where `make run` works. A little more, for the runner's own imports before it starts them.
STARTUP = STARTUP_SECONDS + 30
# Starting the children takes only the runner's imports and a look at the two ports.
CHILDREN_STARTED = 60


def children_of(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


def runner_env(tmp_path: Path, api_port: int, dashboard_port: int) -> dict:
    """The runner's environment on a migrated SQLite database in tmp_path."""
    # No PYTHONPATH: `make install` puts the project on the venv's path, so it runs from any folder.
    env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields and k != "PYTHONPATH"}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path}/nurture.db", DATA_DIR=str(tmp_path), API_PORT=str(api_port),
               LOG_LEVEL="WARNING", DASHBOARD_PORT=str(dashboard_port),
               DASHBOARD_HOST="127.0.0.2")  # another loopback address: the setting must reach Streamlit
    subprocess.run([sys.executable, "-m", "core", "db", "upgrade"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=60)
    return env


@pytest.mark.parametrize(("stop_signal", "to_group"), [(signal.SIGTERM, False), (signal.SIGINT, False),
                                                     (signal.SIGINT, True)],
                         ids=["SIGTERM", "SIGINT", "Ctrl-C in a terminal"])
def test_a_signal_to_the_runner_stops_the_worker_and_the_dashboard(tmp_path, stop_signal, to_group):
    api_port, dashboard_port = free_port(), free_port()
    env = runner_env(tmp_path, api_port, dashboard_port)
    log = tmp_path / "run.log"
    with open(log, "w") as out:
        # Started the way a shell starts a background job: SIGINT ignored unless the runner sets it,
        # and from another folder than the project's (the runner finds its scripts all the same).
        # A terminal's Ctrl-C signals the whole foreground group: the runner and both children at once.
        runner = subprocess.Popen([sys.executable, "-m", "core", "run"], cwd=tmp_path, env=env, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=to_group,
                                  preexec_fn=None if to_group else lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    children: list[int] = []
    try:
        wait_for(lambda: healthy(f"http://127.0.0.1:{api_port}"), STARTUP, "/health", log, interval=0.3)
        children = wait_for(lambda: len(found := children_of(runner.pid)) == 2 and found, CHILDREN_STARTED,
                            "two children", log)
        dashboard = f"http://127.0.0.2:{dashboard_port}/_stcore/health"
        wait_for(lambda: answers(dashboard), STARTUP, "the dashboard on DASHBOARD_HOST", log, interval=0.3)
        # Said only once both answer, and naming the addresses actually served.
        running = (f"Nurture is running: API http://127.0.0.1:{api_port}/health, "
                   f"dashboard http://127.0.0.2:{dashboard_port} (Ctrl-C stops both)")
        wait_for(lambda: running in log.read_text(), STARTUP, "the running banner", log)
        assert log.read_text().index("Nurture is starting: ") < log.read_text().index(running)
        # The runner's environment has no key: the terminal says so, just after the banner.
        wait_for(lambda: "Dry run: no RESEND_API_KEY" in log.read_text(), 5, "the dry-run line", log)
        if to_group:
            os.killpg(runner.pid, stop_signal)
        else:
            runner.send_signal(stop_signal)
        assert runner.wait(timeout=30) == 0, log.read_text()[-3000:]
        assert "Traceback" not in log.read_text()
        wait_for(lambda: not any(alive(pid) for pid in children), 10, "the children to stop", log)
    finally:
        if runner.poll() is None:
            runner.kill()
        for pid in children:  # never leave a worker or dashboard behind, even when the test failed
            if alive(pid):
                os.kill(pid, signal.SIGKILL)



def test_with_the_dashboard_port_taken_the_runner_says_so_in_one_line_and_starts_nothing(tmp_path):
    api_port, dashboard_port = free_port(), free_port()
    env = runner_env(tmp_path, api_port, dashboard_port)
    with socket.socket() as squatter:  # another program on the dashboard's port: it accepts, never answers
        squatter.bind(("127.0.0.2", dashboard_port))
        squatter.listen()
        runner = subprocess.Popen([sys.executable, "-m", "core", "run"], cwd=tmp_path, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            output, _ = runner.communicate(timeout=90)
        finally:
            if runner.poll() is None:
                runner.kill()
                runner.wait()
    assert runner.returncode == 2, output[-3000:]
    assert "Nurture is running" not in output
    assert output.strip() == (f"nurture: The dashboard cannot listen on 127.0.0.2:{dashboard_port} "
                              "(DASHBOARD_HOST, DASHBOARD_PORT): address already in use.")
    assert not healthy(f"http://127.0.0.1:{api_port}")  # no worker was started


def test_with_the_api_port_served_by_another_nurture_the_runner_says_so_and_starts_nothing(tmp_path):
    # A second `make run`, or the systemd worker, on API_PORT: its /health answered the runner's probe,
    # so "Nurture is running" was printed, then the new worker failed to bind and everything stopped.
    api_port, dashboard_port = free_port(), free_port()
    env = runner_env(tmp_path, api_port, dashboard_port)

    class Healthy(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", api_port), Healthy) as other:
        threading.Thread(target=other.serve_forever, daemon=True).start()
        try:
            runner = subprocess.run([sys.executable, "-m", "core", "run"], cwd=tmp_path, env=env,
                                    capture_output=True, text=True, timeout=60)
        finally:
            other.shutdown()
    assert runner.returncode == 2, runner.stdout + runner.stderr
    assert runner.stdout == ""  # neither "starting" nor "running": nothing was started
    assert runner.stderr == (f"nurture: The intake API cannot listen on 127.0.0.1:{api_port} (API_HOST, API_PORT): "
                             "address already in use.\n")
    assert not answers(f"http://127.0.0.2:{dashboard_port}/_stcore/health")


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGHUP], ids=["Ctrl-C", "terminal closed"])
def test_a_signal_to_the_terminal_while_starting_stops_everything_without_a_traceback(tmp_path, stop_signal):
    # The terminal signals its whole foreground group. Streamlit, still importing, printed its own
    # KeyboardInterrupt traceback; the runner alone now hears the terminal and stops its children.
    env = runner_env(tmp_path, free_port(), free_port())
    log = tmp_path / "run.log"
    with open(log, "w") as out:
        runner = subprocess.Popen([sys.executable, "-m", "core", "run"], cwd=tmp_path, env=env, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    children: list[int] = []
    try:
        children = wait_for(lambda: len(found := children_of(runner.pid)) == 2 and found, CHILDREN_STARTED,
                            "two children", log, interval=0.05)
        os.killpg(runner.pid, stop_signal)
        assert runner.wait(timeout=30) == 0, log.read_text()[-3000:]
        wait_for(lambda: not any(alive(pid) for pid in children), 10, "the children to stop", log)
        assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
        assert "Nurture is running" not in log.read_text()
    finally:
        if runner.poll() is None:
            runner.kill()
        for pid in children:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)



def test_ctrl_c_again_while_stopping_kills_a_slow_child_at_once():
    # A second Ctrl-C used to raise out of the runner's wait with a traceback, leaving a child that was
    # slow to stop running on in its own process group.
    with subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                           "print('ready', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True) as slow:
        try:
            assert slow.stdout.readline().strip() == "ready"
            threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
            started = time.monotonic()
            _stop([slow])
            assert slow.returncode == -signal.SIGKILL and time.monotonic() - started < 10
        finally:
            if slow.poll() is None:
                slow.kill()
