"""Segmentation: the original system's rule at every boundary."""

import pytest

from core.campaign import Segment
from core.sequencing import segment_for


def expected_segment(red: int, orange: int) -> Segment:
    """The rule as DESIGN §1 states it, written independently of the code under test."""
    if red >= 2:
        return Segment.CRITICAL
    if red == 1 or orange >= 2:
        return Segment.URGENT
    return Segment.OPTIMIZE


@pytest.mark.parametrize("orange", [0, 1, 2, 3])
@pytest.mark.parametrize("red", [0, 1, 2, 3])
def test_every_red_and_orange_combination_lands_in_the_designed_segment(red, orange):
    assert segment_for(red, orange) is expected_segment(red, orange)


@pytest.mark.parametrize(
    ("red", "orange", "segment"),
    [
        (2, 0, Segment.CRITICAL),
        (1, 0, Segment.URGENT),
        (0, 2, Segment.URGENT),
        (0, 1, Segment.OPTIMIZE),
        (0, 0, Segment.OPTIMIZE),
        (1, 50, Segment.URGENT),
        (50, 50, Segment.CRITICAL),
    ],
)
def test_the_boundaries_between_segments_sit_where_the_original_put_them(red, orange, segment):
    assert segment_for(red, orange) is segment


@pytest.mark.parametrize(
    ("red", "orange", "segment"),
    [
        (None, None, Segment.OPTIMIZE),
        (None, 1, Segment.OPTIMIZE),
        (None, 2, Segment.URGENT),
        (1, None, Segment.URGENT),
        (2, None, Segment.CRITICAL),
    ],
)
def test_a_missing_count_counts_as_zero(red, orange, segment):
    assert segment_for(red, orange) is segment


def test_segments_are_plain_strings_for_storage_and_json():
    assert [s.value for s in Segment] == ["CRITICAL", "URGENT", "OPTIMIZE"]
    assert segment_for(2, 0) == "CRITICAL"
