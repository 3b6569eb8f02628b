"""read_rows: what the CSV import makes of a file, before any validation of the signups in it."""

import io
from pathlib import Path

import pytest

from core.csv_import import read_rows
from core.errors import InvalidSignup, NurtureError
from core.signups import parse_signup

TEXT = "email,first_name\nzoe@example.com,Zoë\n"


def rows_of(path: Path) -> list[tuple[int, dict]]:
    with open(path, encoding="utf-8-sig", newline="") as fh:  # as `python -m core import` opens it
        return list(read_rows(fh))


@pytest.mark.parametrize("encoded", [
    TEXT.encode("latin-1"),
    TEXT.encode("utf-16"),
    TEXT.encode("utf-16-le"),  # no byte order mark: decodes as "UTF-8" full of NULs
    bytes(range(256)) * 4,
])
def test_a_file_that_is_not_utf8_text_is_refused_with_how_to_re_save_it(tmp_path, encoded):
    (tmp_path / "list.csv").write_bytes(encoded)
    with pytest.raises(NurtureError, match='not UTF-8 text: re-save it as "CSV UTF-8"'):
        rows_of(tmp_path / "list.csv")


def test_utf8_with_a_byte_order_mark_reads_like_plain_utf8(tmp_path):
    (tmp_path / "list.csv").write_bytes(TEXT.encode("utf-8-sig"))
    assert rows_of(tmp_path / "list.csv") == [(2, {"email": "zoe@example.com", "first_name": "Zoë"})]


def test_a_cell_over_the_csv_field_limit_is_named_by_line():
    text = "email,first_name\nok@example.com,Ok\nbig@example.com," + "x" * 140_000 + "\n"
    with pytest.raises(NurtureError, match=r"^line 3: not readable as CSV \(field larger than field limit"):
        list(read_rows(io.StringIO(text)))


def test_a_file_without_an_email_column_is_refused():
    with pytest.raises(InvalidSignup, match="header"):
        list(read_rows(io.StringIO("name\nAnn\n")))


@pytest.mark.parametrize("count", ["²", "١", "--5", "two"])
def test_a_count_that_is_not_plain_digits_is_left_for_validation_to_reject(count):
    [(_, row)] = read_rows(io.StringIO(f"email,red_systems\nann@example.com,{count}\n"))
    assert row["red_systems"] == count
    with pytest.raises(InvalidSignup, match="red_systems"):
        parse_signup(row)


@pytest.mark.parametrize(("count", "value"), [("0", 0), ("7", 7), ("-1", -1)])
def test_a_count_in_plain_digits_is_read_as_a_number(count, value):
    [(_, row)] = read_rows(io.StringIO(f"email,red_systems\nann@example.com,{count}\n"))
    assert row["red_systems"] == value


def test_headers_are_matched_whatever_their_case(tmp_path):
    (tmp_path / "list.csv").write_text(" Email ,First_Name,RED_SYSTEMS\nzoe@example.com,Zoë,2\n", encoding="utf-8")
    assert rows_of(tmp_path / "list.csv") == [(2, {"email": "zoe@example.com", "first_name": "Zoë", "red_systems": 2})]


def test_a_row_with_a_cell_over_several_lines_is_numbered_by_its_first_line():
    text = 'email,business_name\nann@example.com,Ann Ltd\nbob@example.com,"Bob\nand\nSons"\ncat@example.com,Cat\n'
    assert [line for line, _ in read_rows(io.StringIO(text))] == [2, 3, 6]


@pytest.mark.parametrize("header", ["email,email", "Email,first_name,EMAIL"])
def test_a_header_naming_a_column_twice_is_refused_rather_than_one_of_them_dropped(header):
    # Read as a dict, one of the two cells would silently win: the other address never imported, unsaid.
    cells = ",".join(f"p{i}@example.com" if "mail" in name.lower() else "Pat" for i, name in enumerate(header.split(",")))
    with pytest.raises(InvalidSignup, match="header: .*email.* twice"):
        list(read_rows(io.StringIO(f"{header}\n{cells}\n")))


def test_blank_header_cells_may_repeat():
    assert [row for _, row in read_rows(io.StringIO("email,,\nann@example.com,,\n"))] == [{"email": "ann@example.com"}]


def test_a_quote_never_closed_is_refused_naming_its_line_instead_of_swallowing_the_rows_after_it():
    # Read leniently, the rest of the file became one cell of line 2, and bob and cat were lost unsaid.
    text = 'email,notes\nann@example.com,"called twice\nbob@example.com,ok\ncat@example.com,fine\n'
    with pytest.raises(NurtureError, match=r"^line 2: not readable as CSV \(unexpected end of data"):
        list(read_rows(io.StringIO(text)))
