"""The rendered emails: personal, segment-aware, safe to send and legally complete."""

from html.parser import HTMLParser

import pytest
from markupsafe import escape

from core.campaign import CHRISTMAS_2025, Segment
from core.emails import EmailContext, RenderedEmail, render_step, sample_context

STEPS = CHRISTMAS_2025.steps
SEGMENTS = [s.value for s in Segment]
UNSUBSCRIBE = "https://nurture.test/unsubscribe?token=abc&step=1"
ADDRESS = "Nurture Systems Ltd, 1 Example Street, London EC1A 1AA, United Kingdom"


def render(step_number: int = 1, *, postal_address: str = ADDRESS, **fields) -> RenderedEmail:
    ctx = {"first_name": "Alex", "business_name": "Hollybrook Bakery", "segment": "CRITICAL", **fields}
    return render_step(
        CHRISTMAS_2025.step(step_number),
        EmailContext(**ctx),
        unsubscribe_url=UNSUBSCRIBE,
        postal_address=postal_address,
    )


def flat(text: str) -> str:
    """The text part with its line wrapping undone, so phrases can be found across line breaks."""
    return " ".join(text.split())


def not_a_python_none(body: str) -> bool:
    """True unless a missing value leaked into the copy as the word None ("None of it" is copy)."""
    return "None" not in body.replace("None of it", "")


def render_all(**overrides) -> list[RenderedEmail]:
    return [render(step.number, **overrides) for step in STEPS]


@pytest.mark.parametrize("segment", SEGMENTS)
def test_every_step_renders_for_every_segment_with_distinct_subjects(segment):
    emails = render_all(segment=segment, red_systems=2, orange_systems=1)

    assert len({e.subject for e in emails}) == len(STEPS)
    for email in emails:
        assert email.html.startswith("<!DOCTYPE html>")
        assert "Hi Alex," in email.html and "Hi Alex," in email.text


def test_html_part_escapes_a_business_name_with_markup():
    email = render(business_name='<script>alert("x")</script> & Sons')

    assert "<script>" not in email.html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Sons" in email.html


def test_text_part_and_subject_keep_a_business_name_with_markup_verbatim():
    email = render(2, business_name="Smith & Sons <Ltd>")

    assert "Smith & Sons <Ltd>" in email.text
    assert email.subject == "What your systems quietly cost Smith & Sons <Ltd> every week"


@pytest.mark.parametrize("missing", [None, "", "   \t "])
def test_missing_names_fall_back_to_friendly_words(missing):
    email = render(2, first_name=missing, business_name=missing, segment="OPTIMIZE")

    assert "Hi there," in email.html and "Hi there," in email.text
    assert "the cost at your business looks different" in flat(email.text)
    assert email.subject == "What your systems quietly cost your business every week"
    assert not_a_python_none(email.html + email.text)


def test_a_missing_first_name_drops_the_greeting_from_the_first_subject_instead_of_saying_there():
    assert render(1, first_name=None).subject == "Your business systems assessment results"
    assert render(1, first_name="Alex").subject == "Your business systems assessment results, Alex"


def test_the_footer_only_names_the_business_when_we_know_it():
    assert "assessment on our website for Hollybrook Bakery." in flat(render().text)
    assert "assessment on our website. This is email 1 of 7" in flat(render(business_name=None).text)


def test_names_are_trimmed_and_inner_whitespace_collapsed():
    welcome = render(1, first_name="  Zoë \n ", business_name=" Hollybrook \t  Bakery ")
    hidden_cost = render(2, first_name="  Zoë \n ", business_name=" Hollybrook \t  Bakery ")

    assert welcome.subject == "Your business systems assessment results, Zoë"
    assert hidden_cost.subject == "What your systems quietly cost Hollybrook Bakery every week"
    assert "Hi Zoë," in welcome.text and "Hi Zoë," in welcome.html
    assert "assessment for Hollybrook Bakery." in flat(welcome.text)


@pytest.mark.parametrize("step", STEPS, ids=lambda s: s.template)
def test_segment_paragraphs_differ_between_segments(step):
    texts = {seg: render(step.number, segment=seg, red_systems=1, orange_systems=1).text for seg in SEGMENTS}
    htmls = {seg: render(step.number, segment=seg, red_systems=1, orange_systems=1).html for seg in SEGMENTS}

    assert len(set(texts.values())) == len(SEGMENTS)
    assert len(set(htmls.values())) == len(SEGMENTS)


@pytest.mark.parametrize(("segment", "group"), [("CRITICAL", "Critical"), ("URGENT", "Urgent"), ("OPTIMIZE", "Optimise")])
def test_the_welcome_email_tells_each_segment_which_group_it_is_in(segment, group):
    email = render(1, segment=segment)

    assert f"in the group we call {group}." in flat(email.text)
    assert f"in the group we call <strong>{group}</strong>." in email.html


def test_assessment_counts_appear_in_words_and_drive_the_weekly_cost_estimate():
    welcome = render(1, segment="CRITICAL", red_systems=3, orange_systems=2)
    hidden_cost = render(2, segment="CRITICAL", red_systems=3, orange_systems=2)

    assert "You marked three systems as red, meaning broken, and another two systems as orange." in flat(welcome.text)
    # 3 red x 3-5 hours + 2 orange x 1-2 hours.
    assert "11–19 hours a week" in flat(hidden_cost.text)
    assert "<strong>11–19 hours a week</strong>" in hidden_cost.html


@pytest.mark.parametrize(("red", "orange", "estimate"), [(8, 2, "26–40+"), (20, 0, "40+"), (50, 50, "40+")])
def test_the_weekly_cost_estimate_stops_at_a_full_working_week(red, orange, estimate):
    hidden_cost = render(2, segment="CRITICAL", red_systems=red, orange_systems=orange)
    assert f"roughly {estimate} hours a week" in flat(hidden_cost.text)
    assert f"<strong>{estimate} hours a week</strong>" in hidden_cost.html


def test_a_single_system_is_singular():
    assert "You marked one system as red" in flat(render(1, segment="URGENT", red_systems=1).text)


@pytest.mark.parametrize(("red", "orange"), [(None, None), (0, 0), (-1, -4)], ids=["absent", "zero", "negative"])
@pytest.mark.parametrize("segment", SEGMENTS)
def test_absent_or_meaningless_counts_are_never_quoted_back(segment, red, orange):
    for email in render_all(segment=segment, red_systems=red, orange_systems=orange):
        body = email.html + email.text
        assert not_a_python_none(body)
        assert "no systems" not in body and "0 systems" not in body and "-1" not in body
        assert "hours a week</strong>" not in email.html


@pytest.mark.parametrize("step", STEPS, ids=lambda s: s.template)
def test_footer_carries_unsubscribe_link_and_postal_address_in_both_parts(step):
    email = render(step.number)

    assert 'href="https://nurture.test/unsubscribe?token=abc&amp;step=1"' in email.html
    assert UNSUBSCRIBE in email.text.splitlines()
    assert ADDRESS in email.html and ADDRESS in email.text.splitlines()
    why = "because you completed the business systems assessment"
    assert why in email.html and why in flat(email.text)
    assert f"This is email {step.number} of 7" in email.html


def test_a_multi_line_postal_address_keeps_its_lines_and_is_escaped_in_html():
    email = render(postal_address="Smith & Co\n1 High St\nLeeds")

    assert "Smith &amp; Co<br>1 High St<br>Leeds" in email.html
    assert "Smith & Co\n1 High St\nLeeds" in email.text


@pytest.mark.parametrize(
    "hostile",
    ["Eve\r\nBcc: victim@example.com", "Eve\nSubject: hi", "Eve\x00\x1b[0m", "Eve\u2028Line", "Eve\u0085Next"],
)
def test_subject_never_contains_a_newline(hostile):
    for email in render_all(first_name=hostile, business_name=hostile):
        assert not any(ch in email.subject for ch in "\r\n\x00\x1b\u2028\u0085")
        assert "  " not in email.subject


def test_a_header_injection_attempt_is_flattened_into_one_harmless_line():
    assert render(1, first_name="Eve\r\nBcc: victim").subject.endswith(", Eve Bcc: victim")


@pytest.mark.parametrize("name", [
    "https://evil.example/refund", "Visit evil.com/refund now", "www.evil.example", "EVIL.COM", "claim at bit.ly",
    "victim@example.com", "Hi from xn--80ak6aa92e.com", "пример.рф", "Booking.com",
])
def test_a_name_a_mail_client_would_show_as_a_link_is_left_out_of_every_part(name):
    # Anyone can sign anyone up: a link in a name would go out from our domain, under our good name.
    for email in render_all(first_name=name, business_name=name):
        for part in (email.subject, email.html, email.text):
            assert name.lower() not in part.lower()
    email = render(1, first_name=name, business_name=name)
    assert "there" in email.html and "your business" in email.html + email.text


@pytest.mark.parametrize("name", ["J. Smith", "Acme Co.", "Dr. Who & Sons Ltd.", "O'Brien", "Zoë", "株式会社 山田",
                                  "Smith & Co. (UK)", "3.5 Stars Bakery"])
def test_names_with_dots_that_are_no_link_are_kept(name):
    email = render(1, first_name=name, business_name=name)
    assert escape(name) in email.html and name in email.text


def test_long_names_are_shortened_in_subjects_but_kept_whole_in_the_body():
    long_name = "Hollybrook Artisan Bakery, Patisserie and Christmas Hamper Company of Greater Yorkshire"
    email = render(2, business_name=long_name)

    assert long_name not in email.subject
    assert len(email.subject) <= 70  # shortened to what an inbox shows
    assert email.subject.startswith("What your systems quietly cost Hollybrook Artisan Bakery")
    assert email.subject.endswith("… every week")
    assert long_name in email.html


@pytest.mark.parametrize("step", range(1, 8))
def test_no_subject_runs_past_what_an_inbox_shows_whatever_the_names(step):
    email = render(step, first_name="Maximiliana-Josephine-Theodora " * 3, business_name="Extraordinarily Long " * 5)
    assert len(email.subject) <= 70


def test_a_right_to_left_override_in_a_name_cannot_reverse_the_rest_of_the_email():
    email = render(2, first_name="\u202eevil", business_name="\u202eשלום בע\"מ")
    for part in (email.subject, email.html, email.text):
        assert not any(ch in part for ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
    assert "שלום בע" in email.subject  # the name itself is kept


@pytest.mark.parametrize(
    ("first_name", "business_name"),
    [("Zoë", "Bäckerei Müller"), ("José", "Peña Cafetería"), ("渡辺", "渡辺商店"), ("Nguyễn", "Phở Hà Nội")],
)
def test_international_names_render_intact(first_name, business_name):
    welcome = render(1, first_name=first_name, business_name=business_name)
    hidden_cost = render(2, first_name=first_name, business_name=business_name)

    assert welcome.subject == f"Your business systems assessment results, {first_name}"
    assert business_name in hidden_cost.subject
    for part in (welcome.html, welcome.text):
        assert f"Hi {first_name}," in part
        assert business_name in part


@pytest.mark.parametrize("step_number", [5, 6, 7])
def test_the_closing_emails_link_to_the_booking_page_in_both_parts(step_number):
    email = render(step_number, booking_url="https://book.test/xmas?src=email&step=7")

    assert 'href="https://book.test/xmas?src=email&amp;step=7"' in email.html
    assert "https://book.test/xmas?src=email&step=7" in email.text.splitlines()


def test_the_last_call_offers_a_free_christmas_review():
    email = render(7)

    assert "Book your free Christmas review" in email.html
    assert "free Christmas systems reviews" in flat(email.text)


LOOKING_FORWARD_TO_CHRISTMAS = ["before Christmas", "27 December", "over the holidays", "December asks",
                                "starts January", "before the break", "close for the holidays",
                                "break for Christmas", "free Christmas review", "Christmas systems review",
                                "pay back before the new year"]


@pytest.mark.parametrize("segment", SEGMENTS)
def test_emails_sent_after_the_season_no_longer_look_forward_to_christmas(segment):
    """A lead who signs up on 22 December gets step 7 on 2 January: no "before we break for Christmas"."""
    before = render_all(segment=segment, red_systems=2, orange_systems=1)
    after = render_all(segment=segment, red_systems=2, orange_systems=1, season_over=True)

    assert len({e.subject for e in after}) == len(STEPS), "still one distinct subject per step"
    for email in after:
        for part in (email.subject, flat(email.html), flat(email.text)):
            assert not [p for p in LOOKING_FORWARD_TO_CHRISTMAS if p in part], part
    changed = [step.number for step, b, a in zip(STEPS, before, after, strict=True) if (b.html, b.text) != (a.html, a.text)]
    assert changed == [3, 5, 6, 7], "only the steps that spoke of the season change"
    assert after[2].subject == "Three fixes you can make before the year gets busy"
    assert "Book your free review" in after[6].html and "tick it off by the end of the week" in flat(after[2].text)


def test_a_text_title_keeps_an_underline_of_its_own_length_after_the_season():
    for number in (3, 7):
        title, underline = render(number, season_over=True).text.splitlines()[:2]
        assert set(underline) == {"="} and len(underline) == len(title)


def test_the_season_ends_on_christmas_eve():
    from datetime import UTC, datetime
    assert not CHRISTMAS_2025.season_over(datetime(2025, 12, 23, 23, 59, tzinfo=UTC))
    assert CHRISTMAS_2025.season_over(datetime(2025, 12, 24, tzinfo=UTC))
    assert CHRISTMAS_2025.season_over(datetime(2026, 1, 10, tzinfo=UTC))


def test_text_lines_are_wrapped_but_urls_are_never_broken():
    url = "https://book.test/" + "christmas-systems-review/" * 4 + "?utm_source=nurture"
    email = render(7, booking_url=url, business_name="A Rather Long Business Name Trading As Something Else")

    assert url in email.text.splitlines()
    assert all(len(line) <= 76 for line in email.text.splitlines() if url not in line)


@pytest.mark.parametrize("segment", SEGMENTS)
def test_the_text_part_contains_no_html(segment):
    for email in render_all(segment=segment, red_systems=2, orange_systems=2):
        assert "<" not in email.text and "&amp;" not in email.text


class _TagBalance(HTMLParser):
    VOID = {"meta", "br", "img", "hr", "input", "link"}

    def __init__(self):
        super().__init__()
        self.open: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag):
        if not self.open or self.open.pop() != tag:
            self.errors.append(tag)


@pytest.mark.parametrize("segment", SEGMENTS)
def test_html_parts_have_balanced_tags(segment):
    for email in render_all(segment=segment, red_systems=2, orange_systems=1):
        parser = _TagBalance()
        parser.feed(email.html)
        assert parser.errors == [] and parser.open == []


def test_an_unknown_segment_is_refused():
    with pytest.raises(ValueError, match="unknown segment 'HOT'"):
        EmailContext("Alex", "Hollybrook Bakery", "HOT")
    with pytest.raises(ValueError):
        sample_context("HOT")


def test_the_segment_enum_and_its_plain_value_render_alike():
    assert render(3, segment=Segment.URGENT) == render(3, segment="URGENT")


@pytest.mark.parametrize("segment", SEGMENTS)
def test_sample_contexts_are_consistent_with_the_segment_rules(segment):
    ctx = sample_context(segment)
    red, orange = ctx.red_systems, ctx.orange_systems
    rule = "CRITICAL" if red >= 2 else "URGENT" if red == 1 or orange >= 2 else "OPTIMIZE"

    assert ctx.segment == segment == rule
    assert ctx.first_name and ctx.business_name


@pytest.mark.parametrize(("step", "red", "orange", "says", "never"), [
    (4, 0, 2, "nothing quite broken, but two systems creaking", "one thing properly broken"),
    (4, 1, 0, "one thing properly broken.", "creaking."),
    (4, 1, 0, "the time to fix the broken one is before", "the creaking system"),
    (4, 2, 0, "one of them is feeding the other.", "feeding the others"),
    (5, 2, 0, "tempting to tackle both at once", "them all"),
    (5, 0, 2, "then the other one you marked orange", "most painful of the two systems"),
    (3, 1, 0, "Start with number one. One broken system, and nothing else struggling", "Struggling systems"),
    (3, 1, 1, "Start with number two. Struggling systems, like the one system you marked orange", "number one."),
    (3, 0, 2, "Start with number two. Struggling systems, like the two systems you marked orange", "broken"),
])
def test_count_aware_sentences_follow_the_leads_own_counts(step, red, orange, says, never):
    segment = "CRITICAL" if red >= 2 else "URGENT"
    text = flat(render(step, segment=segment, red_systems=red, orange_systems=orange).text)
    assert says in text and never not in text


def test_the_last_email_says_so_once_and_the_footer_promises_no_one_click_it_does_not_give():
    text = flat(render(7).text)
    assert text.count("last email") == 1
    assert all("one click" not in flat(render(n).text) + render(n).html for n in range(1, 8))


@pytest.mark.parametrize("step", STEPS, ids=lambda s: s.template)
@pytest.mark.parametrize("segment", SEGMENTS)
def test_a_business_name_ending_in_a_full_stop_never_gets_a_second_one(step, segment):
    email = render(step.number, segment=segment, business_name="O'Brien & Sons Ltd.", red_systems=1, orange_systems=2)

    for part in (email.html, flat(email.text)):
        assert "Ltd.." not in part
    assert "on our website for O'Brien & Sons Ltd. This is email" in flat(email.text)
    assert "on our website for O&#39;Brien &amp; Sons Ltd. This is email" in email.html


def test_a_business_name_without_a_full_stop_still_ends_its_sentence_with_one():
    assert "assessment for Hollybrook Bakery. You gave us" in flat(render(1).text)
    assert "assessment. You gave us" in flat(render(1, business_name=None).html)
    assert "a good year for you and for Hollybrook Bakery. Warm wishes" in flat(render(7).text)


@pytest.mark.parametrize("signup_day", [19, 20, 21, 22, 23])
def test_the_hidden_cost_email_never_promises_fixes_before_christmas_that_arrive_after_it(signup_day):
    """Signed up on 21 December: step 2 goes on the 22nd, step 3 on the 24th, titled for after the season."""
    from datetime import UTC, datetime
    signed_up = datetime(2025, 12, signup_day, 9, tzinfo=UTC)
    hidden_cost, quick_wins = (
        render(n, season_over=CHRISTMAS_2025.season_over(signed_up + CHRISTMAS_2025.step(n).production_offset))
        for n in (2, 3))

    if "before Christmas" not in quick_wins.subject:
        assert "before Christmas" not in flat(hidden_cost.text) + flat(hidden_cost.html)


def inbox_preview(html: str, length: int = 200) -> str:
    """What an inbox shows after the subject: the body's text in order, hidden preheader first."""
    import html as html_lib
    import re
    body = html.split("<body", 1)[1]
    text = html_lib.unescape(re.sub(r"<[^>]+>", " ", body.split(">", 1)[1]))
    return re.sub(r"[ \t\r\n]+", " ", text).strip()[:length]


@pytest.mark.parametrize("step", STEPS, ids=lambda s: s.template)
def test_the_inbox_preview_shows_the_preheader_and_nothing_of_the_layout_after_it(step):
    preview = inbox_preview(render(step.number).html)

    assert "CHRISTMAS 2025" not in preview and "Nurture Systems" not in preview and "Hi Alex" not in preview
    assert preview[:20].strip("\u034f\u200c\xa0 ")
