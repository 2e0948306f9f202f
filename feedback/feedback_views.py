"""The feedback page (/feedback/, staff and reviewers): how people answered the tags the taggers suggested
(acceptance per category, strategy, prompt version and tag) and what reviews teach the learned tagger (the
latest learning curves). Its own module: the evaluation pages (feedback.views) are staff-only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from autotagger.permissions import is_reviewer, is_staff
from feedback.evaluation.replay import LearningCurveResult, Target, learning_curve_targets
from feedback.feedback_charts import BarChart, CurveChart, acceptance_chart, learning_curve_chart
from feedback.models import LearningCurve
from feedback.selectors import Acceptance, AcceptanceBy, feedback_acceptance, learning_curves_latest

# Groupings shown, in order, with their headings; a chart draws at most CHART_ROWS groups (the most reviewed),
# the table under it lists them all.
GROUPINGS: tuple[tuple[AcceptanceBy, str], ...] = (
    ("category", "Category"),
    ("strategy", "Strategy"),
    ("prompt_version", "Prompt version"),
    ("tag", "Tag"),
)
CHART_ROWS = 25


@dataclass(frozen=True)
class AcceptanceSection:
    by: str
    heading: str
    rows: list[Acceptance]
    chart: BarChart


@dataclass(frozen=True)
class CurveSection:
    curve: LearningCurve
    result: dict[str, Any]
    chart: CurveChart
    targets: list[Target]


@login_required
@require_GET
def feedback_overview(request: HttpRequest) -> HttpResponse:
    if not (is_staff(request.user) or is_reviewer(request.user)):
        raise PermissionDenied
    sections = []
    for by, heading in GROUPINGS:
        rows = feedback_acceptance(by=by)
        sections.append(AcceptanceSection(by=by, heading=heading, rows=rows, chart=acceptance_chart(rows[:CHART_ROWS])))
    curves = [
        CurveSection(
            curve=curve,
            result=curve.result,
            chart=learning_curve_chart(curve.result),
            targets=learning_curve_targets(LearningCurveResult.from_json(curve.result)),
        )
        for curve in learning_curves_latest()
    ]
    return render(
        request,
        "feedback/feedback.html",
        {"sections": sections, "curves": curves, "chart_rows": CHART_ROWS, "any_feedback": bool(sections[0].rows)},
    )
