"""feedback.charts.line_chart: where the server places the points of an inline SVG line chart."""

from __future__ import annotations

import pytest

from feedback.charts import line_chart


def test_it_spreads_the_x_labels_evenly_and_puts_0_at_the_bottom_and_the_maximum_at_the_top() -> None:
    chart = line_chart(
        title="F1", x_labels=["v1", "v2", "v3"], series=[("micro-F1", [0.0, 0.5, 1.0])], x_label="x", y_label="y"
    )

    points = chart.series[0].points
    assert [(p.x, p.y) for p in points] == [(60.0, 208.0), (296.0, 112.0), (532.0, 16.0)]
    assert chart.series[0].polyline == "60.0,208.0 296.0,112.0 532.0,16.0"
    assert [t.label for t in chart.x_ticks] == ["v1", "v2", "v3"]
    assert [(t.position, t.label) for t in chart.y_ticks] == [
        (208.0, "0.00"),
        (160.0, "0.25"),
        (112.0, "0.50"),
        (64.0, "0.75"),
        (16.0, "1.00"),
    ]


def test_it_leaves_out_missing_values_and_emphasises_the_first_series_only() -> None:
    chart = line_chart(
        title="F1",
        x_labels=["v1", "v2"],
        series=[("micro-F1", [0.4, 0.6]), ("course", [None, 0.3])],
        x_label="x",
        y_label="y",
        highlight=1,
    )

    headline, course = chart.series
    assert (headline.emphasis, course.emphasis) == (True, False)
    assert [(p.x, p.value, p.title) for p in course.points] == [(532.0, 0.3, "course, v2: 0.300")]
    assert headline.color != course.color
    assert [t.highlight for t in chart.x_ticks] == [False, True]


def test_a_single_version_sits_in_the_middle() -> None:
    chart = line_chart(title="F1", x_labels=["v1"], series=[("micro-F1", [0.5])], x_label="x", y_label="y")

    assert chart.series[0].points[0].x == 296.0


def test_it_refuses_an_axis_without_height() -> None:
    with pytest.raises(ValueError, match="y_max"):
        line_chart(title="F1", x_labels=["v1"], series=[], x_label="x", y_label="y", y_max=0)
