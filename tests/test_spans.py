"""Unit tests of shelf_data.spans: the span selection syntax, its RangeConfig JSON and the window rule."""

from __future__ import annotations

import json

import pytest
from support.refusals import refusal

from shelf_data import spans
from shelf_data.spans import LAST, LATEST, RANGE, SpanSelection


def _static(first: int, last: int) -> dict:
    return {"static_range": {"start_span_number": first, "end_span_number": last}}


pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "selection", "range_config"),
    [
        ("latest", SpanSelection(), ""),
        (" Latest ", SpanSelection(), ""),
        ("last:3", SpanSelection(LAST, count=3), {"rolling_range": {"num_spans": 3}}),
        ("last:1", SpanSelection(LAST, count=1), {"rolling_range": {"num_spans": 1}}),
        ("3-5", SpanSelection(RANGE, first=3, last=5), _static(3, 5)),
        ("7", SpanSelection(RANGE, first=7, last=7), _static(7, 7)),
        ("0-0", SpanSelection(RANGE, first=0, last=0), _static(0, 0)),
    ],
)
def test_each_form_parses_to_its_range_config(text, selection, range_config):
    assert spans.parse(text) == selection
    produced = spans.to_json(selection)
    assert (json.loads(produced) if produced else "") == range_config
    # The JSON reads back as the same selection (what the drivers do with the runtime parameter).
    assert spans.from_value(produced) == selection


@pytest.mark.parametrize("text", ["", "last", "last:0", "last:-2", "5-3", "-1", "3..5", "3-", "first:2", "1,2"])
def test_invalid_forms_name_the_accepted_ones(text):
    with pytest.raises(ValueError, match=r"must be 'latest', 'last:K' \(K >= 1\), 'A-B' \(0 <= A <= B\) or 'N'"):
        spans.parse(text)


@pytest.mark.parametrize(
    ("value", "selection"),
    [
        ("", SpanSelection()),
        (None, SpanSelection()),
        ("last:2", SpanSelection(LAST, count=2)),
        ("4-6", SpanSelection(RANGE, first=4, last=6)),
        ('{"rolling_range": {"num_spans": 4, "start_span_number": 2}}', SpanSelection(LAST, count=4, first=2)),
        # Protobuf JSON: camelCase names, zero fields left out.
        ('{"staticRange": {"endSpanNumber": 3}}', SpanSelection(RANGE, first=0, last=3)),
        ('{"rollingRange": {"numSpans": 2}}', SpanSelection(LAST, count=2)),
    ],
)
def test_runtime_parameter_values(value, selection):
    assert spans.from_value(value) == selection


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "or RangeConfig JSON"),
        (json.dumps(_static(5, 2)), "0 <= start_span_number <= end_span_number"),
        ('{"static_range": {"start_span_number": -1, "end_span_number": 2}}', "0 <= start_span_number"),
        ('{"rolling_range": {"num_spans": 0}}', "num_spans >= 1"),
        ('{"rolling_range": {"num_spans": 2}, "static_range": {}}', "exactly one of static_range or rolling_range"),
        ('{"static_range": {"end_span_number": "3"}}', "static_range needs integers"),
        ("sometimes", "RangeConfig JSON"),
    ],
)
def test_bad_runtime_parameter_values_name_the_value(value, fragment):
    message = refusal(ValueError, spans.from_value, value)
    assert fragment in message
    assert f"Received range_config={value!r}" in message


@pytest.mark.parametrize(
    ("selection", "present", "chosen"),
    [
        (SpanSelection(), [3, 1, 2], [3]),
        (SpanSelection(LAST, count=2), [1, 2, 5, 9], [5, 9]),
        (SpanSelection(LAST, count=10), [1, 2], [1, 2]),
        (SpanSelection(LAST, count=3, first=4), [1, 2, 5, 9], [5, 9]),
        (SpanSelection(RANGE, first=2, last=5), [1, 2, 4, 6], [2, 4]),  # gaps are skipped, not an error
        (SpanSelection(RANGE, first=6, last=6), [1, 6], [6]),
    ],
)
def test_select_takes_the_window_of_the_spans_present(selection, present, chosen):
    assert selection.select(present) == chosen


def test_select_nothing_names_the_selection_and_the_spans_present():
    with pytest.raises(ValueError, match=r"no span matches the selection 3-4; spans present: 1-2, 7"):
        SpanSelection(RANGE, first=3, last=4).select([1, 2, 7])
    with pytest.raises(ValueError, match="spans present: none"):
        SpanSelection().select([])


def test_static_json_covers_first_to_last():
    assert json.loads(spans.static_json([7, 5, 6])) == _static(5, 7)


@pytest.mark.parametrize(
    ("values", "text"),
    [([7], "7"), ([3, 4, 5], "3-5"), ([5, 3, 4, 9], "3-5, 9"), ([1, 3], "1, 3"), ([], "")],
)
def test_format_spans(values, text):
    assert spans.format_spans(values) == text


def test_selection_prints_as_its_config_value():
    assert [str(spans.parse(t)) for t in ("latest", "last:4", "2-6", "3")] == ["latest", "last:4", "2-6", "3"]
    assert str(SpanSelection(LATEST)) == "latest"
