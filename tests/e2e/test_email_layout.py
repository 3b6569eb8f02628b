"""The rendered emails in real Chromium at a phone's width: nothing a lead types can widen them."""

from pathlib import Path

import pytest

from core.campaign import CHRISTMAS_2025, Segment
from core.emails import EmailContext, render_step
from tests.e2e.test_dashboard_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)")]
PHONE_WIDTH = 375
# Long words with no break opportunity in "business name" (a website is left out of emails: core/emails.py).
UNBREAKABLE = ["Hollybrook_Artisan_Bakery_and_Patisserie_of_York", "Ænima-Longwordwithoutanyspacesatallthatgoesonandon"]


def test_no_email_is_wider_than_a_phone_whatever_the_business_name():
    from playwright.sync_api import sync_playwright

    too_wide = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": PHONE_WIDTH, "height": 800})
            for name in UNBREAKABLE:
                for segment in Segment:
                    for step in CHRISTMAS_2025.steps:
                        ctx = EmailContext("Alex", name, segment.value, red_systems=2 if segment is Segment.CRITICAL else 1)
                        email = render_step(step, ctx, unsubscribe_url="https://n.test/u/t", postal_address="1 High St")
                        page.set_content(email.html)
                        width = page.evaluate("document.documentElement.scrollWidth")
                        if width > PHONE_WIDTH:
                            too_wide.append((name, segment.value, step.number, width))
        finally:
            browser.close()

    assert too_wide == []
