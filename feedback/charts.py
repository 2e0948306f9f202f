"""The geometry of a small line chart drawn as inline SVG by the template include feedback/includes/line_chart.html:
the machine is offline and the pages carry no chart library, so the server places every point."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# Told apart without relying on colour alone: the first series (the headline number) is also thicker and labelled.
PALETTE = ("#0b6e4f", "#1d4ed8", "#c2410c", "#a21caf", "#b45309", "#0f766e", "#be123c", "#4d7c0f", "#475569")

WIDTH, HEIGHT = 560.0, 260.0
# Room on the left for the tick labels and the axis title, on the right for the last point's value.
LEFT, RIGHT, TOP, BOTTOM = 60.0, 28.0, 16.0, 52.0
Y_TICKS = 5


@dataclass(frozen=True)
class ChartPoint:
    x: float
    y: float
    value: float
    title: str  # the tooltip: series, x label and value


@dataclass(frozen=True)
class ChartSeries:
    name: str
    color: str
    points: list[ChartPoint]
    emphasis: bool  # drawn thicker, its values written next to the points

    @property
    def polyline(self) -> str:
        return " ".join(f"{p.x},{p.y}" for p in self.points)


@dataclass(frozen=True)
class Tick:
    position: float
    label: str
    highlight: bool = False


@dataclass(frozen=True)
class LineChart:
    title: str
    x_label: str
    y_label: str
    series: list[ChartSeries]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    width: float = WIDTH
    height: float = HEIGHT
    left: float = LEFT
    top: float = TOP
    right_edge: float = WIDTH - RIGHT
    bottom_edge: float = HEIGHT - BOTTOM

    @property
    def x_label_position(self) -> tuple[float, float]:
        return ((self.left + self.right_edge) / 2, self.height - 8)

    @property
    def y_label_position(self) -> tuple[float, float]:
        return (10.0, (self.top + self.bottom_edge) / 2)


def line_chart(
    *,
    title: str,
    x_labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    x_label: str,
    y_label: str,
    y_max: float = 1.0,
    highlight: int | None = None,
) -> LineChart:
    """One line per series over `x_labels` (evenly spaced, in the order given), the y axis from 0 to `y_max`.
    A series' None values are left out: its line joins the points it has. `highlight` is the index of the x
    label to mark (the version the page is about)."""
    if y_max <= 0:
        raise ValueError("y_max must be positive")
    plot_width, plot_height = WIDTH - RIGHT - LEFT, HEIGHT - BOTTOM - TOP
    count = len(x_labels)

    def x_at(index: int) -> float:
        # A single version sits in the middle rather than on the axis.
        return round(LEFT + (plot_width / 2 if count == 1 else index * plot_width / (count - 1)), 1)

    def y_at(value: float) -> float:
        return round(TOP + plot_height * (1 - min(max(value, 0.0), y_max) / y_max), 1)

    lines = []
    for number, (name, values) in enumerate(series):
        points = [
            ChartPoint(x=x_at(i), y=y_at(value), value=value, title=f"{name}, {x_labels[i]}: {value:.3f}")
            for i, value in enumerate(values[:count])
            if value is not None
        ]
        lines.append(ChartSeries(name=name, color=PALETTE[number % len(PALETTE)], points=points, emphasis=number == 0))
    return LineChart(
        title=title,
        x_label=x_label,
        y_label=y_label,
        series=lines,
        x_ticks=[Tick(position=x_at(i), label=label, highlight=i == highlight) for i, label in enumerate(x_labels)],
        y_ticks=[
            Tick(position=y_at(y_max * step / (Y_TICKS - 1)), label=f"{y_max * step / (Y_TICKS - 1):.2f}")
            for step in range(Y_TICKS)
        ],
    )
