"""The schema check: one clear list of missing and mistyped columns, and --create-missing."""

from core.notion.properties import EXPECTED
from core.notion.schema import Problem, check_schema, compare, definition
from core.testing_side import FakeNotion


def test_a_complete_database_has_no_problems():
    report = check_schema(FakeNotion())

    assert report.ok and report.problems == []
    assert report.lines() == ["The Email Sequence database has every column the mirror needs."]


def test_missing_and_mistyped_columns_are_listed_together_in_the_expected_order():
    schema = {**EXPECTED, "Email": "rich_text"}
    del schema["Stop"], schema["Next Email Due"]

    report = check_schema(FakeNotion(schema))

    assert report.problems == [Problem("Email", "email", "rich_text"), Problem("Next Email Due", "date", None),
                               Problem("Stop", "checkbox", None)]
    lines = report.lines()
    assert lines[0] == "The Email Sequence database has 3 problem(s):"
    assert "  - mistyped  Email is rich_text, expected email" in lines
    assert "  - missing   Stop (checkbox)" in lines
    assert any("--create-missing" in line for line in lines)


def test_create_missing_adds_only_the_missing_columns_and_leaves_mistyped_ones_alone():
    notion = FakeNotion({"Name": "title", "Email": "rich_text"})

    report = check_schema(notion, create_missing=True)

    assert "Stop" in report.created and "Email 7 Sent" in report.created
    assert notion.columns["Stop"] == "checkbox" and notion.columns["Segment"] == "select"
    assert notion.columns["Email"] == "rich_text"
    assert report.problems == [Problem("Email", "email", "rich_text")]


def test_a_title_under_another_name_is_reported_with_the_fix_not_created():
    notion = FakeNotion({k: v for k, v in EXPECTED.items() if k != "Name"} | {"Contact": "title"})

    report = check_schema(notion, create_missing=True)

    assert report.problems == [Problem("Name", "title", None)]
    assert "Its title column is called 'Contact': rename it to 'Name' in Notion." in report.lines()


def test_the_business_relation_is_expected_only_when_businessx_is_configured():
    assert check_schema(FakeNotion(EXPECTED)).ok
    notion = FakeNotion(EXPECTED, businesses={})
    del notion.columns["Business"]

    report = check_schema(notion)

    assert report.problems == [Problem("Business", "relation", None)]


def test_definitions_carry_select_options_and_the_relation_target():
    assert definition("select", "Segment", None)["select"]["options"][0] == {"name": "CRITICAL", "color": "red"}
    assert definition("relation", "Business", "ds-9")["relation"]["data_source_id"] == "ds-9"
    assert definition("checkbox", "Stop", None) == {"checkbox": {}}


def test_compare_is_empty_when_every_column_matches():
    assert compare({"A": "title"}, {"A": "title", "Extra": "number"}) == []
