"""The pages of prompt versions: one version's numbers (evaluations, usage, judged precision, acceptance), and
every version of a prompt side by side, with the evaluation scores charted over versions."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from autotagger.permissions import can_try_prompts
from feedback.charts import LineChart, line_chart
from feedback.version_selectors import (
    EvaluationSeries,
    VersionEvaluation,
    prompt_version_numbers,
    prompt_versions_overview,
)
from feedback.views import View
from prompts.models import Prompt, PromptVersion


def prompt_viewers_only(view: View) -> View:
    """Anonymous users go to the login page; signed-in users who may not see prompt versions get 403."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not can_try_prompts(request.user):
            raise PermissionDenied("The numbers of prompt versions are for staff who may see prompt versions.")
        return view(request, *args, **kwargs)

    return login_required(wrapper)


@dataclass(frozen=True)
class SeriesChart:
    series: EvaluationSeries
    chart: LineChart
    chart_id: str

    @property
    def rows(self) -> list[tuple[VersionEvaluation, list[float | None]]]:
        """Each run with its categories' F1 in the order of the table's columns."""
        return [(run, [run.category_f1.get(slug) for slug in self.series.categories]) for run in self.series.runs]


def _charts(series: list[EvaluationSeries], *, prompt: Prompt, highlight: int | None = None) -> list[SeriesChart]:
    """Per dataset, strategy, k and source: micro-F1 (the headline line) and each category's F1, over the versions
    evaluated on it, in version order."""
    charts = []
    for number, one in enumerate(series, start=1):
        numbers = [run.version_number for run in one.runs]
        chart = line_chart(
            title=f"F1 of the versions of {prompt.name} on {one.dataset} ({one.strategy}, k={one.k})",
            x_labels=[f"v{n}" for n in numbers],
            series=[
                ("micro-F1", [run.overall_f1 for run in one.runs]),
                *((slug, [run.category_f1.get(slug) for run in one.runs]) for slug in one.categories),
            ],
            x_label="prompt version",
            y_label="F1",
            highlight=numbers.index(highlight) if highlight in numbers else None,
        )
        charts.append(SeriesChart(series=one, chart=chart, chart_id=f"chart-{number}"))
    return charts


@prompt_viewers_only
@require_GET
def prompt_version_detail(request: HttpRequest, version_id: int) -> HttpResponse:
    version = get_object_or_404(PromptVersion.objects.select_related("prompt"), pk=version_id)
    numbers = prompt_version_numbers(version=version)
    context = {
        "version": version,
        "numbers": numbers,
        "charts": _charts(numbers.series, prompt=version.prompt, highlight=version.number),
    }
    return render(request, "feedback/prompt_version_detail.html", context)


@prompt_viewers_only
@require_GET
def prompt_versions(request: HttpRequest, prompt_id: int) -> HttpResponse:
    prompt = get_object_or_404(Prompt, pk=prompt_id)
    overview = prompt_versions_overview(prompt=prompt)
    context = {"prompt": prompt, "overview": overview, "charts": _charts(overview.series, prompt=prompt)}
    return render(request, "feedback/prompt_versions.html", context)
