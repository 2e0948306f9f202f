"""The feedback page's charts (acceptance bars, learning curves) as SVG geometry, computed here so that the
templates only place what is given (no JavaScript, nothing fetched: the page works offline)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from feedback.selectors import Acceptance

# Acceptance bars: a label column, then a bar of at most BAR_WIDTH for a rate of 100%.
LABEL_WIDTH, BAR_WIDTH, BAR_HEIGHT, BAR_GAP = 180.0, 300.0, 16.0, 6.0
# Learning curve: a CURVE_WIDTH x CURVE_HEIGHT plot whose lower left corner is at (CURVE_X, CURVE_Y).
CURVE_X, CURVE_Y, CURVE_WIDTH, CURVE_HEIGHT = 44.0, 190.0, 420.0, 170.0


@dataclass(frozen=True)
class Bar:
    label: str
    y: float
    width: float
    rate: float | None
    accepted: int
    rejected: int
    added: int

    @property
    def text_y(self) -> float:
        return round(self.y + BAR_HEIGHT - 4, 1)


@dataclass(frozen=True)
class BarChart:
    bars: list[Bar]
    height: float
    label_width: float = LABEL_WIDTH
    bar_height: float = BAR_HEIGHT

    @property
    def width(self) -> float:
        return LABEL_WIDTH + BAR_WIDTH + 60

    @property
    def label_x(self) -> float:
        return LABEL_WIDTH - 6

    @property
    def value_x(self) -> float:
        return LABEL_WIDTH + BAR_WIDTH + 6


def acceptance_chart(rows: Sequence[Acceptance]) -> BarChart:
    """One bar per group: its acceptance rate (an empty bar for a group with only added tags)."""
    bars = []
    for i, row in enumerate(rows):
        rate = row.rate
        bars.append(
            Bar(
                label=row.key if len(row.key) <= 28 else row.key[:27] + "…",
                y=round(i * (BAR_HEIGHT + BAR_GAP) + BAR_GAP, 1),
                width=round((rate or 0.0) * BAR_WIDTH, 1),
                rate=rate,
                accepted=row.accepted,
                rejected=row.rejected,
                added=row.added,
            )
        )
    return BarChart(bars=bars, height=round(len(bars) * (BAR_HEIGHT + BAR_GAP) + BAR_GAP, 1))


@dataclass(frozen=True)
class CurveMark:
    x: float
    y: float
    title: str


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class CurveChart:
    uncertainty: list[CurveMark]
    random: list[CurveMark]
    cv_y: float | None
    cv_f1: float | None
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    left: float = CURVE_X
    right: float = CURVE_X + CURVE_WIDTH
    top: float = CURVE_Y - CURVE_HEIGHT
    bottom: float = CURVE_Y

    @staticmethod
    def _points(marks: list[CurveMark]) -> str:
        return " ".join(f"{m.x},{m.y}" for m in marks)

    @property
    def uncertainty_points(self) -> str:
        return self._points(self.uncertainty)

    @property
    def random_points(self) -> str:
        return self._points(self.random)


def learning_curve_chart(result: dict[str, Any]) -> CurveChart:
    """Micro-F1 against reviews for both orders, and the cross-validated F1 as a level line; the F1 axis spans
    the values to the nearest tenth around them, so small gains stay visible."""
    points = result["points"]
    cv_f1 = result.get("cv_f1")
    values = [p["uncertainty_f1"] for p in points] + [p["random_f1"] for p in points]
    values += [cv_f1] if cv_f1 is not None else []
    low = max(0.0, math.floor(min(values) * 10) / 10) if values else 0.0
    high = min(1.0, math.ceil(max(values) * 10) / 10) if values else 1.0
    if high <= low:
        low, high = max(0.0, low - 0.1), min(1.0, high + 0.1)
    most = max((p["reviews"] for p in points), default=1) or 1

    def x(reviews: float) -> float:
        return round(CURVE_X + reviews / most * CURVE_WIDTH, 1)

    def y(f1: float) -> float:
        return round(CURVE_Y - (f1 - low) / (high - low) * CURVE_HEIGHT, 1)

    def marks(key: str, name: str) -> list[CurveMark]:
        return [
            CurveMark(x=x(p["reviews"]), y=y(p[key]), title=f"{name}: F1 {p[key]:.3f} after {p['reviews']} reviews")
            for p in points
        ]

    steps = round((high - low) * 10)
    y_ticks = [Tick(position=y(low + i / 10), label=f"{low + i / 10:.1f}") for i in range(steps + 1)]
    x_ticks = [Tick(position=x(p["reviews"]), label=str(p["reviews"])) for p in points]
    return CurveChart(
        uncertainty=marks("uncertainty_f1", "Least sure first"),
        random=marks("random_f1", "Random order"),
        cv_y=y(cv_f1) if cv_f1 is not None else None,
        cv_f1=cv_f1,
        x_ticks=x_ticks,
        y_ticks=y_ticks,
    )
