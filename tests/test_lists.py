"""comma_parts: the one splitter behind every comma-separated option."""
from stseval.common.lists import comma_parts


def test_splits_strips_and_drops_empty_parts_keeping_order_and_repeats():
    assert comma_parts(" b, a,,b , ") == ["b", "a", "b"]


def test_each_item_of_a_list_is_split_too_and_non_strings_become_text():
    assert comma_parts(["stsb, ATEC", " ,bq", 0.5]) == ["stsb", "ATEC", "bq", "0.5"]


def test_none_and_blank_give_nothing():
    assert comma_parts(None) == []
    assert comma_parts(" , ,") == []
    assert comma_parts([]) == []
