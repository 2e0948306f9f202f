"""Staff pages of evaluation runs: the list, one run's report, two runs side by side, and evaluation jobs of
the strategies that ask a model (started here, followed with a progress bar); and the reviewers' activity."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from autotagger.permissions import is_staff
from feedback.dispatch import evaluation_job_enqueue
from feedback.evaluation.datasets import DatasetError
from feedback.evaluation.errors import EvaluationError
from feedback.evaluation.jobs import (
    LLM_STRATEGIES,
    JobProgress,
    evaluation_job_progress,
    evaluation_job_start,
    evaluation_jobs_recent,
)
from feedback.models import EvaluationJob, EvaluationRun
from feedback.selectors import ReviewerActivity, reviewer_activity, reviewer_disagreements
from prompts.sources import llm_sources_available
from taxonomy.limits import DEFAULT_TAGS_PER_CATEGORY, MAX_TAGS_PER_CATEGORY

RUNS_PER_PAGE = 50
JOBS_SHOWN = 10
# A dataset uploaded to start an evaluation job; the shared datasets are a few MB at most.
DATASET_MAX_BYTES = 50 * 1024 * 1024
BASELINE_LABELS = {
    "majority": "Majority",
    "zero_shot": "Zero-shot",
    "knn15": "k-NN (15)",
    "tfidf_logreg": "TF-IDF + LR",
}
# config["train"] of a run that used the database's taxonomy and gold labels (see runner.evaluate_with_database).
DATABASE = "database"
# Differences smaller than this print as 0.000: not coloured as a gain or a loss.
NEGLIGIBLE = 0.0005

View = Callable[..., HttpResponse]


def staff_required(view: View) -> View:
    """Anonymous users go to the login page; signed-in users who are not staff get 403."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not is_staff(request.user):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return login_required(wrapper)


def _runs() -> QuerySet[EvaluationRun]:
    # The per-category metrics are only read on a run's own page.
    return EvaluationRun.objects.defer("metrics").order_by("-created_at", "-id")


class RunChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return (
            f"#{obj.pk} · {obj.dataset} · {obj.strategy} k={obj.config.get('k')} · "
            f"F1 {obj.overall_f1:.3f} · {obj.created_at:%Y-%m-%d %H:%M}"
        )


class EvaluationCompareForm(forms.Form):
    a = RunChoiceField(queryset=_runs(), label="Run A", empty_label=None)
    b = RunChoiceField(queryset=_runs(), label="Run B", empty_label=None)

    def __init__(self, *args: Any, choices: QuerySet[EvaluationRun] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if choices is not None:
            # Only for the selects of the list page: what the user sees there.
            for name in ("a", "b"):
                cast(RunChoiceField, self.fields[name]).queryset = choices

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("a") is not None and cleaned.get("a") == cleaned.get("b"):
            raise ValidationError("Pick two different runs.", code="same_run")
        return cleaned


@dataclass(frozen=True)
class CategoryRow:
    slug: str
    support: int
    precision: float
    recall: float
    f1: float
    macro_f1: float
    coverage: float
    baselines: list[float]  # F1, in the order of the page's baseline columns
    beats_all: bool


@dataclass(frozen=True)
class ReliabilityBar:
    """One bin of a reliability diagram, in SVG units: the bar is the share of its tags that were right,
    the dot sits at the bin's mean score."""

    x: float
    y: float
    width: float
    height: float
    dot_x: float
    title: str


@dataclass(frozen=True)
class CalibrationRow:
    slug: str
    support: int
    precision_floor: float | None
    best_baseline: str | None
    baseline_f1: float | None
    margin: float | None
    interval: tuple[float, float] | None
    ece: float | None
    pairs: int
    bars: list[ReliabilityBar]


# The reliability diagram: a PLOT x PLOT square whose lower left corner is at (PLOT_X, PLOT_Y).
PLOT, PLOT_X, PLOT_Y = 160.0, 30.0, 170.0


def _reliability_bars(bins: list[dict[str, Any]]) -> list[ReliabilityBar]:
    bars = []
    for b in bins:
        if not b["count"]:
            continue
        height = float(b["accuracy"]) * PLOT
        bars.append(
            ReliabilityBar(
                x=round(PLOT_X + float(b["lower"]) * PLOT + 1, 1),
                y=round(PLOT_Y - height, 1),
                width=round((float(b["upper"]) - float(b["lower"])) * PLOT - 2, 1),
                height=round(height, 1),
                dot_x=round(PLOT_X + float(b["mean_score"]) * PLOT, 1),
                title=f"Scores {b['lower']:.1f}–{b['upper']:.1f}: {b['count']} tags, mean score "
                f"{b['mean_score']:.2f}, {b['accuracy']:.0%} right",
            )
        )
    return bars


def _calibration_rows(run: EvaluationRun) -> list[CalibrationRow]:
    """Per category: the margin over the best baseline, the calibration and the precision floor (runs
    stored before these were measured have none of them)."""
    metrics = run.metrics
    calibration, comparison = metrics.get("calibration", {}), metrics.get("comparison", {})
    floors = metrics.get("precision_floors", {})
    rows = []
    for slug in _category_slugs(run):
        compared, calibrated = comparison.get(slug), calibration.get(slug)
        rows.append(
            CalibrationRow(
                slug=slug,
                support=int(metrics["categories"][slug]["support"]),
                precision_floor=floors.get(slug),
                best_baseline=BASELINE_LABELS.get(compared["best_baseline"], compared["best_baseline"])
                if compared
                else None,
                baseline_f1=compared["baseline_f1"] if compared else None,
                margin=compared["margin"] if compared else None,
                interval=tuple(compared["interval_95"]) if compared else None,  # type: ignore[arg-type]
                ece=calibrated["ece"] if calibrated else None,
                pairs=int(calibrated["pairs"]) if calibrated else 0,
                bars=_reliability_bars(calibrated["bins"]) if calibrated else [],
            )
        )
    return rows


@dataclass(frozen=True)
class CompareRow:
    slug: str
    a: float | None
    b: float | None
    difference: str
    tone: str  # the badge class: a gain, a loss, or neither


def _baseline_names(metrics: dict[str, Any]) -> list[str]:
    # PostgreSQL's jsonb keeps no key order: the known baselines in a fixed order, any others after.
    names = metrics.get("baselines", {})
    return [name for name in BASELINE_LABELS if name in names] + sorted(set(names) - set(BASELINE_LABELS))


def _category_slugs(run: EvaluationRun) -> list[str]:
    """In the order the run scored them (its config keeps the list; jsonb does not keep key order)."""
    scored = run.metrics.get("categories", {})
    return [slug for slug in run.config.get("categories", []) if slug in scored] + sorted(
        set(scored) - set(run.config.get("categories", []))
    )


def _category_rows(run: EvaluationRun, baseline_names: list[str]) -> list[CategoryRow]:
    categories, baselines = run.metrics.get("categories", {}), run.metrics.get("baselines", {})
    rows = []
    for slug in _category_slugs(run):
        values = categories[slug]
        baseline_f1 = [float(baselines[name].get(slug, {}).get("f1", 0.0)) for name in baseline_names]
        rows.append(
            CategoryRow(
                slug=slug,
                support=int(values["support"]),
                precision=float(values["precision"]),
                recall=float(values["recall"]),
                f1=float(values["f1"]),
                macro_f1=float(values["macro_f1"]),
                coverage=float(values["coverage"]),
                baselines=baseline_f1,
                beats_all=bool(baseline_f1) and all(values["f1"] > f1 for f1 in baseline_f1),
            )
        )
    return rows


def _mode(config: dict[str, Any]) -> str:
    if config.get("folds"):
        return f"{config['folds']}-fold cross-validation"
    if config.get("train") == DATABASE:
        return "the tagger as deployed (the file's tags only compared)"
    if config.get("train"):
        return f"a tagger trained on {config['train']}"
    return "—"


def _difference(a: float | None, b: float | None) -> tuple[str, str]:
    if a is None or b is None:
        return "—", "badge"
    change = b - a
    if abs(change) < NEGLIGIBLE:
        return "0.000", "badge"
    return f"{change:+.3f}", "badge badge-succeeded" if change > 0 else "badge badge-failed"


def _compare_row(slug: str, a: float | None, b: float | None) -> CompareRow:
    difference, tone = _difference(a, b)
    return CompareRow(slug=slug, a=a, b=b, difference=difference, tone=tone)


class EvaluationJobForm(forms.Form):
    dataset = forms.FileField(help_text="A labelled JSONL file, one recipe per line (see the shared datasets' README).")
    strategy = forms.ChoiceField(choices=[(s, s) for s in LLM_STRATEGIES])
    source = forms.ChoiceField(help_text="The model source to ask.")
    k = forms.IntegerField(
        min_value=1, max_value=MAX_TAGS_PER_CATEGORY, initial=DEFAULT_TAGS_PER_CATEGORY, label="Tags per category (k)"
    )
    categories = forms.CharField(
        required=False, help_text="Dataset categories to score, comma-separated; empty: every one the taxonomy has."
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        sources = llm_sources_available()
        cast(forms.ChoiceField, self.fields["source"]).choices = [(name, name) for name in sources]

    def clean_dataset(self) -> Any:
        upload = self.cleaned_data["dataset"]
        if upload.size > DATASET_MAX_BYTES:
            raise ValidationError(f"The file is larger than {DATASET_MAX_BYTES // (1024 * 1024)} MB.")
        return upload


def _jobs_with_progress() -> list[tuple[EvaluationJob, JobProgress]]:
    jobs = evaluation_jobs_recent(limit=JOBS_SHOWN)
    # `done` and `failed` are annotations (evaluation_jobs_recent).
    return [(job, JobProgress(done=job.done, failed=job.failed, total=job.total)) for job in jobs]  # type: ignore[attr-defined]


@staff_required
@require_http_methods(["GET", "POST"])
def evaluation_list(request: HttpRequest) -> HttpResponse:
    page = Paginator(_runs().select_related("created_by"), RUNS_PER_PAGE).get_page(request.GET.get("page"))
    runs = list(page.object_list)
    initial = {"a": runs[1].pk, "b": runs[0].pk} if len(runs) >= 2 else {}
    form = EvaluationCompareForm(initial=initial, choices=_runs().filter(pk__in=[run.pk for run in runs]))
    may_start = request.user.has_perm("feedback.add_evaluationjob")
    job_form = EvaluationJobForm() if may_start else None
    status = 200
    if request.method == "POST":
        if not may_start:
            raise PermissionDenied
        job_form = EvaluationJobForm(request.POST, request.FILES)
        if job_form.is_valid():
            data = job_form.cleaned_data
            categories = [c.strip() for c in data["categories"].split(",") if c.strip()] or None
            try:
                job = evaluation_job_start(
                    content=data["dataset"].read(),
                    name=data["dataset"].name.rsplit(".", 1)[0] or "dataset",
                    strategy=data["strategy"],
                    source=data["source"],
                    k=data["k"],
                    categories=categories,
                    user=request.user,
                )
            except (EvaluationError, DatasetError) as exc:
                job_form.add_error(None, getattr(exc, "message", str(exc)))
            else:
                evaluation_job_enqueue(job=job)
                return redirect("evaluations:job", job_id=job.pk)
        status = 400
    context = {
        "page": page,
        "runs": runs,
        "form": form,
        "jobs": _jobs_with_progress(),
        "job_form": job_form,
        "may_start": may_start,
    }
    return render(request, "feedback/evaluation_list.html", context, status=status)


@staff_required
@require_GET
def evaluation_job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(EvaluationJob.objects.defer("dataset_content").select_related("run"), pk=job_id)
    return render(request, "feedback/evaluation_job.html", {"job": job, "progress": evaluation_job_progress(job=job)})


@staff_required
@require_GET
def evaluation_job_status(request: HttpRequest, job_id: int) -> JsonResponse:
    """What the job page's progress bar polls."""
    job = get_object_or_404(EvaluationJob.objects.defer("dataset_content").select_related("run"), pk=job_id)
    progress = evaluation_job_progress(job=job)
    return JsonResponse(
        {
            "status": job.status,
            "done": progress.done,
            "failed": progress.failed,
            "total": progress.total,
            "percent": progress.percent,
            "error": job.error,
            "run_url": job.run.get_absolute_url() if job.run is not None else None,
        }
    )


@staff_required
@require_GET
def evaluation_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(EvaluationRun.objects.select_related("created_by"), pk=run_id)
    baseline_names = _baseline_names(run.metrics)
    context = {
        "run": run,
        "metrics": run.metrics,
        "rows": _category_rows(run, baseline_names),
        "calibration_rows": _calibration_rows(run),
        "measured_calibration": "calibration" in run.metrics,
        "baseline_labels": [BASELINE_LABELS.get(name, name) for name in baseline_names],
        "mode": _mode(run.config),
        "adherence_ok": not any(run.metrics.get("adherence", {}).values()),
    }
    return render(request, "feedback/evaluation_detail.html", context)


@staff_required
@require_GET
def evaluation_compare(request: HttpRequest) -> HttpResponse:
    form = EvaluationCompareForm(request.GET)
    if not form.is_valid():
        return render(request, "feedback/evaluation_compare.html", {"form": form}, status=400)
    a: EvaluationRun = form.cleaned_data["a"]
    b: EvaluationRun = form.cleaned_data["b"]
    a_categories, b_categories = a.metrics.get("categories", {}), b.metrics.get("categories", {})
    slugs = list(dict.fromkeys([*_category_slugs(a), *_category_slugs(b)]))
    rows = [
        _compare_row(
            slug,
            a_categories[slug]["f1"] if slug in a_categories else None,
            b_categories[slug]["f1"] if slug in b_categories else None,
        )
        for slug in slugs
    ]
    overall = [
        _compare_row(key, a.metrics["overall"][key], b.metrics["overall"][key]) for key in ("precision", "recall", "f1")
    ]
    context = {
        "form": form,
        "a": a,
        "b": b,
        "rows": rows,
        "overall": overall,
        "same_dataset": a.dataset_sha256 == b.dataset_sha256,
    }
    return render(request, "feedback/evaluation_compare.html", context)


ACTIVITY_DAYS = 14
DISAGREEMENTS_SHOWN = 100
# The per-day chart of each reviewer, in SVG user units.
DAY_BAR_WIDTH, DAY_BAR_GAP, DAY_CHART_HEIGHT = 10, 2, 32


@dataclass(frozen=True)
class DayBar:
    x: int
    y: float
    height: float
    day: Any
    count: int


def _day_bars(activity: ReviewerActivity, *, most: int) -> list[DayBar]:
    bars = []
    for n, (day, count) in enumerate(activity.per_day):
        height = DAY_CHART_HEIGHT * count / most if most else 0.0
        bars.append(
            DayBar(
                x=n * (DAY_BAR_WIDTH + DAY_BAR_GAP), y=DAY_CHART_HEIGHT - height, height=height, day=day, count=count
            )
        )
    return bars


@staff_required
@require_GET
def reviewer_activity_page(request: HttpRequest) -> HttpResponse:
    """Who reviews how much, and where reviewers disagree about a recipe's tag."""
    activities = reviewer_activity(days=ACTIVITY_DAYS)
    most = max((count for a in activities for _, count in a.per_day), default=0)
    context = {
        "rows": [(activity, _day_bars(activity, most=most)) for activity in activities],
        "days": ACTIVITY_DAYS,
        "chart_width": ACTIVITY_DAYS * (DAY_BAR_WIDTH + DAY_BAR_GAP) - DAY_BAR_GAP,
        "chart_height": DAY_CHART_HEIGHT,
        "bar_width": DAY_BAR_WIDTH,
        "most": most,
        "disagreements": reviewer_disagreements(limit=DISAGREEMENTS_SHOWN),
        "disagreements_shown": DISAGREEMENTS_SHOWN,
    }
    return render(request, "feedback/reviewers.html", context)
