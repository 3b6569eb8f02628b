"""The real dashboard in real Chromium: a test signup made through the form is sent by the real worker.

Starts `scheduler.py` (dry run) and `streamlit run dashboard.py` as subprocesses on free ports and
drives Debian's Chromium with Playwright. Screenshots of every page go to a temporary folder, or
to docs/screenshots/ when UPDATE_SCREENSHOTS=1 is set.
"""

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from core.settings import Settings
from tests.e2e.processes import START_UP_SECONDS, free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# A few website signups first, so the pages have something to show besides the test signup.
WEBSITE_SIGNUPS = [
    ("ada@example.com", "Ada", "Ada's Apiary", 3, 1), ("ben@example.com", "Ben", "Bright Bikes", 1, 0),
    ("cleo@example.com", "Cleo", "Cleo Cakes", 0, 2), ("dev@example.com", "Dev", "Dev & Sons", 0, 0),
    ("eli@example.com", "Eli", "Eli's Electrics", 2, 2), ("fay@example.com", "Fay", "Fay Florals", 0, 1),
    ("gus@example.com", "Gus", "Gus Garage", 1, 3), ("hana@example.com", "Hana", "Hana Hair", 0, 0),
]
PAGES = {"overview": "", "signups": "signups", "sends": "sends", "test-signup": "test_signup",
         "templates": "templates", "settings": "settings"}


def _wait_http(url: str, proc: subprocess.Popen, log: Path, seconds: float = START_UP_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args} exited early:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {url}:\n{log.read_text()[-3000:]}")


@contextmanager
def _process(args: list[str], env: dict, log: Path, ready_url: str) -> Iterator[subprocess.Popen]:
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_http(ready_url, proc, log)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextmanager
def serve_dashboard(port: int, env: dict, log: Path | None = None) -> Iterator[subprocess.Popen]:
    """`streamlit run dashboard.py` on 127.0.0.1:port, until its health endpoint answers."""
    log = log or Path(env.get("DATA_DIR", ".")) / "dashboard.log"
    args = ["-m", "streamlit", "run", "dashboard.py", "--server.port", str(port), "--server.headless", "true",
            "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]
    with _process(args, env, log, f"http://127.0.0.1:{port}/_stcore/health") as proc:
        yield proc


@contextmanager
def browser_page():
    """A Chromium page (Debian's binary, never a downloaded one) at a desktop size."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1440, "height": 1000})
        finally:
            browser.close()


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No Nurture variable from the shell (so no Resend key: a dry run), a fresh SQLite file."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path}/nurture.db", DATA_DIR=str(tmp_path), **extra)
    return env


def _settle(page) -> None:
    """Wait until Streamlit has finished running the page script and drawn its charts.

    The "running" indicator can appear a moment after the first elements do, so it must stay
    away for two looks in a row.
    """
    page.get_by_role("heading", level=1).first.wait_for(timeout=30_000)
    running = "() => !!document.querySelector('[data-testid=\"stStatusWidget\"]')"
    quiet = 0
    deadline = time.monotonic() + 30
    while quiet < 2 and time.monotonic() < deadline:
        page.wait_for_timeout(500)
        quiet = 0 if page.evaluate(running) else quiet + 1
    page.wait_for_timeout(500)  # charts and the iframe paint just after the run ends


def _fill(page, label: str, value: str) -> None:
    """Type into a widget and commit it; typing again if a rerun that was still on its way wiped it.

    While Streamlit swaps a widget for its re-rendered copy, both can be on the page for a moment:
    wait for one before typing, rather than typing into the copy about to go.
    """
    field = page.get_by_label(label, exact=True)
    for _ in range(10):
        if field.count() != 1:
            page.wait_for_timeout(300)
            continue
        field.fill(value)
        field.press("Enter")
        page.wait_for_timeout(400)
        if field.count() == 1 and field.input_value() == value:
            return
    raise AssertionError(f"{label!r} would not keep {value!r}")


def _fill_form(page, values: dict[str, str]) -> None:
    """Fill several widgets; then check that every one still holds its value (a rerun may have reset one)."""
    for _ in range(3):
        for label, value in values.items():
            _fill(page, label, value)
        _settle(page)
        if all(page.get_by_label(label, exact=True).input_value() == value for label, value in values.items()):
            return
    raise AssertionError(f"the form would not keep {values}")


def _shoot(page, folder: Path, name: str) -> None:
    """A picture of the whole page: Streamlit scrolls inside its main block, so grow the window to fit."""
    _settle(page)
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": 1440, "height": max(900, min(int(height), 4000))})
    page.wait_for_timeout(500)
    page.screenshot(path=str(folder / f"{name}.png"))
    page.set_viewport_size({"width": 1440, "height": 1000})


@pytest.fixture
def screenshots(tmp_path) -> Path:
    folder = ROOT / "docs" / "screenshots" if os.environ.get("UPDATE_SCREENSHOTS") else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)")
def test_a_test_signup_made_in_the_browser_is_sent_by_the_worker_and_shown_in_signups(tmp_path, screenshots):
    env = clean_env(tmp_path, API_PORT=str(free_port()))
    worker_up = f"http://127.0.0.1:{env['API_PORT']}/health"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with _process(["scheduler.py"], env, tmp_path / "worker.log", worker_up), \
            serve_dashboard(port, env, tmp_path / "dashboard.log"), browser_page() as page:
        page.goto(f"{base}/test_signup")
        _settle(page)
        for email, name, business, red, orange in WEBSITE_SIGNUPS:
            reply = httpx.post(worker_up.replace("/health", "/webhook/christmas-signup"), timeout=10, json={
                "email": email, "first_name": name, "business_name": business, "red_systems": red,
                "orange_systems": orange, "yellow_systems": 2, "green_systems": 3, "assessment_score": 55})
            assert reply.status_code == 202, reply.text
        _fill_form(page, {"Email": "Browser.Test@Example.com", "First name": "Robin",
                          "Business name": "Robin's Rolls", "Red systems (broken)": "2"})
        page.get_by_text("CRITICAL", exact=True).first.wait_for()
        page.get_by_role("button", name="Sign up").click()
        page.get_by_text("Enrolled browser.test@example.com as CRITICAL").wait_for()
        _shoot(page, screenshots, "test-signup")

        page.get_by_role("link", name="Open the timeline").click()
        page.get_by_text("browser.test@example.com").first.wait_for()
        deadline = time.monotonic() + 30
        while not page.get_by_text("Step 1 · Welcome — sent").count():
            assert time.monotonic() < deadline, "the worker never sent the welcome email"
            page.wait_for_timeout(1000)
            page.reload()
            _settle(page)
        assert page.get_by_text("provider id dry-run-").count(), "the dry-run provider's id is shown"
        _shoot(page, screenshots, "signups")

        for name in ("overview", "sends", "templates", "settings"):
            page.goto(f"{base}/{PAGES[name]}")
            _shoot(page, screenshots, name)
        page.goto(base)
        page.get_by_text("Worker running").wait_for()
    assert sorted(p.name for p in screenshots.glob("*.png")) == sorted(f"{n}.png" for n in PAGES)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)")
def test_every_template_control_reads_in_full_from_a_laptop_to_a_narrow_window(tmp_path):
    port = free_port()
    with serve_dashboard(port, clean_env(tmp_path)), browser_page() as page:
        for width in _at_each_width(page, f"http://127.0.0.1:{port}/templates", lambda p: p.get_by_text("Subject:")):
            cut = _cut_short(page, '[data-testid="stMain"]')
            assert cut == [], f"at {width} px these are cut short: {cut}"


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)")
def test_a_pause_from_elsewhere_redraws_the_settings_page_not_only_the_sidebar(tmp_path):
    from core import db, switches
    from core.timeutil import utcnow

    env = clean_env(tmp_path)
    port = free_port()
    with serve_dashboard(port, env), browser_page() as page:
        page.goto(f"http://127.0.0.1:{port}/settings")
        _settle(page)
        page.get_by_text("Sending normally.").wait_for()
        engine = db.create_db_engine(env["DATABASE_URL"])
        try:
            with db.write_transaction(engine) as conn:  # as `python -m core pause` or the circuit breaker does
                switches.set_paused(conn, True, actor="cli", now=utcnow(), reason="from the command line")
        finally:
            engine.dispose()
        # The sidebar notices within a heartbeat; the page body must follow without a reload.
        page.get_by_role("button", name="Resume sending").wait_for(timeout=20_000)
        assert not page.get_by_text("Sending normally.").count()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)")
@pytest.mark.parametrize("path", ["", "signups"])
def test_an_unreachable_database_shows_its_sentence_without_streamlits_own_list_of_page_files(tmp_path, path):
    # A run stopped before the menu was registered fell back to Streamlit's list of the files in pages/:
    # "dashboard", "overview", "test signup"..., each page repeating the error. Only a browser draws that list.
    env = clean_env(tmp_path)
    env["DATABASE_URL"] = f"postgresql+psycopg://nurture@127.0.0.1:{free_port()}/nurture"  # nothing listens there
    port = free_port()
    with serve_dashboard(port, env), browser_page() as page:
        page.goto(f"http://127.0.0.1:{port}/{path}")
        page.get_by_text("The database is unreachable:").wait_for(timeout=30_000)
        page.wait_for_timeout(1000)  # the menu, when drawn, comes with the same run
        assert not page.locator('[data-testid="stSidebarNav"]').count(), page.inner_text("body")
        assert not page.get_by_role("link", name="test signup").count()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)")
def test_the_sends_page_follows_the_worker_without_a_reload(tmp_path):
    env = clean_env(tmp_path)
    _enroll(env, email="queued@example.com", red_systems=2)  # its welcome email is due now
    port = free_port()
    with serve_dashboard(port, env), browser_page() as page:
        page.goto(f"http://127.0.0.1:{port}/sends")
        _settle(page)
        page.get_by_text("0 sent in the last 24 h", exact=False).wait_for()
        once = subprocess.run([sys.executable, "scheduler.py", "--once"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=60)
        assert once.returncode == 0, once.stderr
        # The worker sent it (a dry run): the summary says so within a refresh, with no click or reload.
        page.get_by_text("1 sent in the last 24 h", exact=False).wait_for(timeout=25_000)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)")
def test_every_overview_figure_reads_in_full_from_a_laptop_to_a_narrow_window(tmp_path):
    env = clean_env(tmp_path, API_PORT=str(free_port()))
    worker_up = f"http://127.0.0.1:{env['API_PORT']}/health"
    port = free_port()
    with _process(["scheduler.py"], env, tmp_path / "worker.log", worker_up), serve_dashboard(port, env), \
            browser_page() as page:
        for email, name, business, red, orange in WEBSITE_SIGNUPS:  # four-figure sums need no more than this
            httpx.post(worker_up.replace("/health", "/webhook/christmas-signup"), timeout=10, json={
                "email": email, "first_name": name, "business_name": business, "red_systems": red,
                "orange_systems": orange})
        for width in _at_each_width(page, f"http://127.0.0.1:{port}/", lambda p: p.get_by_text("Funnel by step")):
            cut = page.evaluate("""() => [...document.querySelectorAll(
                '[data-testid="stMetricValue"], [data-testid="stMetricValue"] *, [data-testid="stMetricLabel"] *')]
                .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent)""")
            assert cut == [], f"at {width} px these are cut short: {cut}"
            # Vega draws each chart in an SVG as wide as its column; anything past its edge is clipped.
            clipped = page.evaluate("""() => [...document.querySelectorAll('[data-testid="stVegaLiteChart"] svg.marks')]
                .flatMap(svg => [...svg.querySelectorAll('.role-legend-label text, .mark-arc path, .mark-text text')]
                    .filter(e => e.getBoundingClientRect().right > svg.getBoundingClientRect().right + 1)
                    .map(e => e.textContent || 'a slice of the segment donut'))""")
            assert clipped == [], f"at {width} px the charts cut off: {clipped}"


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)")
def test_a_four_figure_change_since_yesterday_reads_in_full_on_every_card(tmp_path):
    # 5,000 leads send over a thousand emails a day: "↑ 1,126 vs yesterday" was cut to "vs yester…".
    env = clean_env(tmp_path)
    subprocess.run([sys.executable, "bench/fill.py", "--database-url", env["DATABASE_URL"], "--contacts", "5000"],
                   cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
    port = free_port()
    with serve_dashboard(port, env), browser_page() as page:
        for width in _at_each_width(page, f"http://127.0.0.1:{port}/", lambda p: p.get_by_text("Funnel by step")):
            deltas = page.evaluate("""() => [...document.querySelectorAll('[data-testid="stMetricDelta"]')]
                .map(e => e.textContent)""")
            assert any(re.search(r"\d,\d{3}", d) for d in deltas), f"no four-figure change to check: {deltas}"
            cut = page.evaluate("""() => [...document.querySelectorAll(
                '[data-testid="stMetricDelta"] *, [data-testid="stMetricDeltaDescription"] *')]
                .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent)""")
            assert cut == [], f"at {width} px these are cut short: {cut}"


def _enroll(env: dict, **fields: str) -> str:
    """A signup written straight through core, as the webhook's writer does; returns the contact's id."""
    from core.bootstrap import build_services
    from core.intake import enroll_now
    from tests.support import signup_request

    services = build_services(Settings(_env_file=None, database_url=env["DATABASE_URL"], data_dir=env["DATA_DIR"]),
                              migrate=True)
    try:
        return enroll_now(services, [signup_request(**fields)])[0].contact_id
    finally:
        services.close()


def _cut_short(page, scope: str) -> list[str]:
    """The labels under `scope` drawn narrower than their text (Streamlit ends them with "…"), or past
    the right edge of their column."""
    return page.evaluate("""scope => [...document.querySelectorAll(scope)].flatMap(root =>
        [...root.querySelectorAll('button, label, [data-testid="stMarkdownContainer"]')].filter(e => {
            const column = e.parentElement.closest('[data-testid="stColumn"]') || root;
            return e.scrollWidth > e.clientWidth + 1
                || e.getBoundingClientRect().right > column.getBoundingClientRect().right + 1;
        }).map(e => e.textContent.trim()))""", scope)


NARROWING_WIDTHS = (1366, 1024, 800)  # a laptop, a small laptop, a narrow window


def _at_each_width(page, url: str, ready) -> Iterator[int]:
    """Open `url` at each of NARROWING_WIDTHS in turn, once the page has drawn `ready(page)`; yields the width."""
    for width in NARROWING_WIDTHS:
        page.set_viewport_size({"width": width, "height": 1000})
        page.goto(url)
        _settle(page)
        ready(page).wait_for()
        yield width


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)")
def test_every_timeline_action_reads_in_full_from_a_laptop_to_a_narrow_window(tmp_path):
    env = clean_env(tmp_path)
    contact = _enroll(env, email="ada@example.com", first_name="Ada")
    port = free_port()
    with serve_dashboard(port, env), browser_page() as page:
        for width in _at_each_width(page, f"http://127.0.0.1:{port}/signups?contact={contact}",
                                    lambda p: p.get_by_role("button", name="Cancel sequence")):
            cut = _cut_short(page, ".st-key-timeline")
            assert cut == [], f"at {width} px these are cut short: {cut}"


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)")
def test_every_signups_filter_and_the_export_button_read_in_full_from_a_laptop_to_a_narrow_window(tmp_path):
    env = clean_env(tmp_path)
    _enroll(env, email="ada@example.com", first_name="Ada")
    port = free_port()
    with serve_dashboard(port, env), browser_page() as page:
        for width in _at_each_width(page, f"http://127.0.0.1:{port}/signups",
                                    lambda p: p.get_by_text("Select a row to open")):
            cut = _cut_short(page, '[data-testid="stMain"]')
            assert cut == [], f"at {width} px these are cut short: {cut}"


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)")
def test_the_integration_cards_stack_rather_than_break_their_words_in_a_narrow_window(tmp_path):
    port = free_port()
    with serve_dashboard(port, clean_env(tmp_path)), browser_page() as page:
        for width in _at_each_width(page, f"http://127.0.0.1:{port}/settings",
                                    lambda p: p.get_by_role("button", name="Check connection")):
            # A label over several lines: three squeezed columns broke it to "Check connectio / n".
            broken = page.evaluate("""() => [...document.querySelectorAll(
                    '[data-testid="stMain"] button [data-testid="stMarkdownContainer"]')]
                .filter(label => { const lines = document.createRange();
                                   lines.selectNodeContents(label.querySelector('p') || label);
                                   return new Set([...lines.getClientRects()].map(x => Math.round(x.top))).size > 1; })
                .map(label => label.textContent.trim())""")
            assert broken == [], f"at {width} px these labels break over lines: {broken}"


def _fail_first_step(env: dict, error: str) -> None:
    """Leave the welcome email of every contact failed, as the dispatcher leaves a permanent refusal."""
    from core import db
    from core.timeutil import utcnow

    engine = db.create_db_engine(env["DATABASE_URL"])
    try:
        with db.write_transaction(engine) as conn:
            conn.execute(sa.text("UPDATE send SET status = 'failed', attempts = 3, last_error = :error, "
                                 "finished_at = :now WHERE step = 1"), {"error": error, "now": utcnow()})
    finally:
        engine.dispose()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)")
def test_every_column_of_the_failed_sends_fits_a_laptops_width(tmp_path):
    env = clean_env(tmp_path)
    _enroll(env, email="someone.long@example.com", red_systems=2)
    _fail_first_step(env, "422 validation_error: The `to` field must be a valid email address; the receiving "
                          "server answered 550 5.1.1 mailbox unavailable")
    port = free_port()
    with serve_dashboard(port, env), browser_page() as page:
        page.set_viewport_size({"width": 1366, "height": 768})
        page.goto(f"http://127.0.0.1:{port}/sends")
        _settle(page)
        page.get_by_role("tab", name="Failed").click()
        table = page.locator('[data-testid="stDataFrame"]:visible')
        table.wait_for()
        _settle(page)
        # The grid scrolls sideways when its columns are wider than it: attempts, last, was out of view.
        wider, shown = table.locator(".dvn-scroller").evaluate("s => [s.scrollWidth, s.clientWidth]")
        assert wider <= shown + 1, f"the Failed table's columns need {wider} px, it shows {shown}"


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)")
def test_the_signups_tables_hover_toolbar_leaves_the_export_button_clear(tmp_path):
    env = clean_env(tmp_path)
    _enroll(env, email="ada@example.com", first_name="Ada")
    port = free_port()
    with serve_dashboard(port, env), browser_page() as page:
        for width in (1366, 1920):
            page.set_viewport_size({"width": width, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/signups")
            _settle(page)
            page.locator('[data-testid="stDataFrame"]').hover(position={"x": 200, "y": 60})
            toolbar = page.locator('[data-testid="stElementToolbar"]')
            toolbar.wait_for()
            page.wait_for_timeout(400)  # it fades in
            bar, button = toolbar.bounding_box(), page.locator('[data-testid="stDownloadButton"]').bounding_box()
            assert bar["y"] >= button["y"] + button["height"], f"at {width} px the toolbar covers Export CSV"
