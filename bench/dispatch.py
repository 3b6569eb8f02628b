"""Dispatch benchmark: how fast the real worker drains a backlog, and how soon a welcome email goes.

    .venv/bin/python bench/dispatch.py [--emails 4000] [--signups-per-second 10] [--seconds 20]

Everything runs as it does in production, each in its own process: the Resend stand-in
(`tests/standins/resend_api.py`, 5 requests/s and 40 ms latency, like a paid plan) and
`scheduler.py` on a fresh SQLite database, pointed at the stand-in through RESEND_API_URL.

1. Drain: 4,000 enrollments whose step 1 is due; `scheduler.py --no-api` sends them. Reported:
   the drain rate against the 500 emails/s ceiling (5 calls/s x 100 per batch), the share of
   calls the stand-in answered 429, and the worker's RSS (VmRSS) sampled while draining.
2. Welcome latency: the worker serves the intake API; signups are posted at 10/s for 20 s and
   each welcome email is timed from the webhook's 202 to the stand-in accepting it (target <= 1 s).
"""

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from core.bootstrap import build_services  # noqa: E402
from core.enrollments import SignupRequest  # noqa: E402
from core.intake import enroll_now  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.signups import parse_signup  # noqa: E402

STANDIN = ROOT / "tests" / "standins" / "resend_api.py"
API_KEY = "re_bench_standin_key"
SECRET_KEY = "bench-secret-key-not-for-production-0123456789"
CALLS_PER_SECOND, BATCH = 5, 100
CEILING = CALLS_PER_SECOND * BATCH
TARGET_SHARE_OF_CEILING = 0.95  # the target
TARGET_429_SHARE = 0.02  # the target
TARGET_RSS_MB = 250  # ours: the issue asks only for the figure
TARGET_LATENCY_S = 1.0


@contextmanager
def standin(rate_limit: float, latency_ms: float):
    """The Resend stand-in as a script; yields its base URL."""
    proc = subprocess.Popen([sys.executable, str(STANDIN), "--port", "0", "--api-key", API_KEY,
                             "--rate-limit", str(rate_limit), "--latency-ms", str(latency_ms)],
                            stdout=subprocess.PIPE, text=True)
    try:
        match = re.search(r"listening on (http://\S+)", proc.stdout.readline())
        if not match:
            raise SystemExit("the Resend stand-in did not start")
        yield match.group(1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()


@contextmanager
def worker(folder: Path, database_url: str, standin_url: str, *args: str, **env_extra: str):
    """`scheduler.py` as a subprocess with a clean environment; stopped with SIGTERM on exit."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    env.update(DATABASE_URL=database_url, DATA_DIR=str(folder), SECRET_KEY=SECRET_KEY, RESEND_API_KEY=API_KEY,
               RESEND_FROM_EMAIL="Nurture <hello@example.com>", RESEND_API_URL=standin_url,
               RESEND_RATE_LIMIT=str(CALLS_PER_SECOND), LOG_LEVEL="WARNING", **env_extra)
    log = open(folder / "worker.log", "a")
    proc = subprocess.Popen([sys.executable, str(ROOT / "scheduler.py"), *args], env=env, cwd=folder,
                            stdout=log, stderr=log)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        return None
    return None


def fresh_database(folder: Path, emails: list[str]) -> str:
    """A migrated SQLite file with every address enrolled now, so each step 1 is due."""
    url = f"sqlite:///{folder}/nurture.db"
    services = build_services(Settings(_env_file=None, database_url=url, data_dir=str(folder),
                                       secret_key=SECRET_KEY), migrate=True)
    try:
        for i in range(0, len(emails), 500):
            enroll_now(services, [SignupRequest(parse_signup({"email": e, "first_name": "Bench"}), source="bench")
                                  for e in emails[i:i + 500]])
    finally:
        services.close()
    return url


def control(url: str, path: str):
    return httpx.get(f"{url}{path}", timeout=30).json()


def drain(folder: Path, count: int, standin_url: str) -> dict:
    emails = [f"drain{i:05d}@example.com" for i in range(count)]
    database_url = fresh_database(folder, emails)
    rss: list[float] = []
    with worker(folder, database_url, standin_url, "--no-api") as proc:
        started = time.time()
        deadline = started + 30 + count / 50
        while control(standin_url, "/_stats")["accepted"] < count:
            if proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"the worker did not drain the backlog; see {folder / 'worker.log'}")
            if (sample := rss_mb(proc.pid)) is not None:
                rss.append(sample)
            time.sleep(0.1)
        finished = time.time()
    sent, stats = control(standin_url, "/_sent"), control(standin_url, "/_stats")
    arrivals = sorted(e["at"] for e in sent)
    first_call = sum(1 for at in arrivals if at - arrivals[0] < 0.05)  # the first call's emails
    span = arrivals[-1] - arrivals[0]
    return {
        "emails": count, "unique": len({e["to"][0] for e in sent}), "accepted": len(sent),
        "startup_s": arrivals[0] - started, "span_s": span, "wall_s": finished - started,
        "rate": (len(sent) - first_call) / span if span else float("inf"),
        "calls": stats["requests"], "rate_limited": stats["rate_limited"],
        "rss_max": max(rss, default=0.0), "rss_median": statistics.median(rss) if rss else 0.0,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def welcome_latency(folder: Path, per_second: float, seconds: float, standin_url: str) -> dict:
    database_url = fresh_database(folder, [])
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    accepted_at: dict[str, float] = {}
    with worker(folder, database_url, standin_url, API_PORT=str(port)) as proc, httpx.Client(timeout=10) as client:
        _wait_for_health(client, base, proc)
        start, total = time.time(), int(per_second * seconds)
        for i in range(total):
            time.sleep(max(0.0, start + i / per_second - time.time()))
            email = f"welcome{i:04d}@example.com"
            answer = client.post(f"{base}/webhook/christmas-signup", json={"email": email, "first_name": "Lat"})
            if answer.status_code != 202:
                raise SystemExit(f"the webhook answered {answer.status_code}: {answer.text[:200]}")
            accepted_at[email] = time.time()
        deadline = time.time() + 30
        while time.time() < deadline:
            arrived = {e["to"][0]: e["at"] for e in control(standin_url, "/_sent") if e["to"][0] in accepted_at}
            if len(arrived) == len(accepted_at):
                break
            time.sleep(0.2)
    latencies = sorted(arrived[e] - accepted_at[e] for e in arrived)
    return {
        "signups": len(accepted_at), "delivered": len(latencies),
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else float("nan"),
        "max": latencies[-1] if latencies else float("nan"),
    }


def _wait_for_health(client: httpx.Client, base: str, proc: subprocess.Popen) -> None:
    deadline = time.time() + 30
    while time.time() < deadline and proc.poll() is None:
        try:
            if client.get(f"{base}/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit("the worker's API did not come up")


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def report(d: dict, w: dict, args) -> None:
    share_429 = d["rate_limited"] / d["calls"] if d["calls"] else 0.0
    rows = [
        ("backlog delivered (unique / accepted)", f"{d['unique']:,} / {d['accepted']:,}",
         f"{d['emails']:,} / {d['emails']:,}", verdict(d["unique"] == d["accepted"] == d["emails"])),
        ("worker start -> first email accepted", f"{d['startup_s']:.2f} s", "(start-up)", ""),
        ("first -> last email accepted", f"{d['span_s']:.2f} s", "", ""),
        ("drain rate", f"{d['rate']:.0f} emails/s ({d['rate'] / CEILING:.0%} of ceiling)",
         f">= {TARGET_SHARE_OF_CEILING:.0%} of {CEILING}/s", verdict(d["rate"] >= TARGET_SHARE_OF_CEILING * CEILING)),
        ("provider calls answered 429", f"{d['rate_limited']} of {d['calls']} ({share_429:.1%})",
         f"<= {TARGET_429_SHARE:.0%}", verdict(share_429 <= TARGET_429_SHARE)),
        ("worker RSS while draining (max / median)", f"{d['rss_max']:.0f} / {d['rss_median']:.0f} MB",
         f"<= {TARGET_RSS_MB} MB", verdict(d["rss_max"] <= TARGET_RSS_MB)),
        ("welcome emails delivered", f"{w['delivered']} / {w['signups']}", f"{w['signups']}",
         verdict(w["delivered"] == w["signups"])),
        ("welcome latency p50 (202 -> accepted)", f"{w['p50']:.3f} s", f"<= {TARGET_LATENCY_S:.0f} s",
         verdict(w["p50"] <= TARGET_LATENCY_S)),
        ("welcome latency p99", f"{w['p99']:.3f} s", f"<= {TARGET_LATENCY_S:.0f} s",
         verdict(w["p99"] <= TARGET_LATENCY_S)),
        ("welcome latency max", f"{w['max']:.3f} s", "", ""),
    ]
    print(f"\nDispatch benchmark: SQLite, Resend stand-in at {args.rate_limit:g} req/s with {args.latency_ms:g} ms "
          f"latency; {args.emails:,} due emails; signups at {args.signups_per_second:g}/s for {args.seconds:g} s")
    widths = [max(len(r[i]) for r in rows + [("metric", "measured", "target", "")]) for i in range(4)]
    for row in [("metric", "measured", "target", ""), tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=4000)
    parser.add_argument("--signups-per-second", type=float, default=10)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rate-limit", type=float, default=CALLS_PER_SECOND)
    parser.add_argument("--latency-ms", type=float, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nurture-bench-") as tmp:
        folder = Path(tmp)
        (folder / "drain").mkdir()
        (folder / "latency").mkdir()
        with standin(args.rate_limit, args.latency_ms) as url:
            print(f"draining {args.emails:,} due emails…", flush=True)
            drained = drain(folder / "drain", args.emails, url)
            httpx.post(f"{url}/_reset", timeout=10)
            print(f"posting signups at {args.signups_per_second:g}/s for {args.seconds:g} s…", flush=True)
            latency = welcome_latency(folder / "latency", args.signups_per_second, args.seconds, url)
    report(drained, latency, args)


if __name__ == "__main__":
    main()
