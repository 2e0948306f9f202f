"""Staff pages of evaluation runs: the list, one run's report, two runs side by side, and evaluation jobs of
the strategies that ask a model (started here, followed with a progress bar); and the reviewers' activity."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from autotagger.errors import DomainError
from autotagger.permissions import can_try_prompts, is_staff
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
from feedback.models import EvaluationItem, EvaluationJob, EvaluationJobStatus, EvaluationRun
from feedback.selectors import ReviewerActivity, reviewer_activity, reviewer_disagreements
from feedback.services.draft_evaluation import (
    LABELLED_SELECTION_MAX,
    draft_evaluation_start,
    labelled_recipes_dataset,
    shared_dataset_content,
    shared_datasets,
)
from feedback.version_selectors import prompt_version_by_label
from prompts.models import PromptVersion
from prompts.rendering import template_problems
from prompts.selectors import prompt_version_active, prompt_version_active_row, prompt_versions_for_tagging
from prompts.sources import llm_sources_available
from taxonomy.limits import DEFAULT_TAGS_PER_CATEGORY, MAX_TAGS_PER_CATEGORY
from taxonomy.selectors import categories_list

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
# Failed recipes listed per side of a draft's evaluation.
FAILURES_SHOWN = 10

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
        # Linked for those who may open the version's page.
        "prompt_version": prompt_version_by_label(label=run.prompt_version)
        if run.prompt_version and can_try_prompts(request.user)
        else None,
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


class DataChoice:
    LABELLED, SHARED, UPLOAD = "labelled", "shared", "upload"
    LABELS = {
        LABELLED: "Recipes of the database with gold labels",
        SHARED: "A shared labelled dataset",
        UPLOAD: "A labelled JSONL file",
    }


class DraftEvaluationForm(forms.Form):
    """A draft of the tagging prompt (as the playground edits it) and the labelled data to run it over."""

    version = forms.ModelChoiceField(
        queryset=PromptVersion.objects.none(), required=False, label="Started from", help_text="Names the draft."
    )
    system_template = forms.CharField(
        strip=False, widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false"}), label="System template"
    )
    user_template = forms.CharField(
        strip=False, widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}), label="User template"
    )
    source = forms.ChoiceField(label="Model source")
    k = forms.IntegerField(
        min_value=1, max_value=MAX_TAGS_PER_CATEGORY, initial=DEFAULT_TAGS_PER_CATEGORY, label="Tags per category (k)"
    )
    categories = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None checked: every category of the data that the taxonomy has.",
    )
    over = forms.ChoiceField(label="Run over", widget=forms.RadioSelect, initial=DataChoice.LABELLED)
    recipe_ids = forms.CharField(
        required=False, label="Recipe ids", help_text="Comma- or space-separated; empty: the most recently labelled."
    )
    query = forms.CharField(required=False, label="Title contains", max_length=200)
    recipe_source = forms.CharField(required=False, label="Recipe source", max_length=100, help_text="e.g. starter")
    limit = forms.IntegerField(
        min_value=1,
        max_value=LABELLED_SELECTION_MAX,
        initial=20,
        label="How many",
        help_text="The most recently labelled.",
    )
    shared = forms.ChoiceField(required=False, label="Shared dataset")
    upload = forms.FileField(
        required=False, label="Labelled JSONL file", help_text="Format: the shared datasets' README."
    )

    def __init__(self, *args: Any, categories: list[tuple[str, str]], datasets: list[str], **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        cast(forms.ModelChoiceField, self.fields["version"]).queryset = prompt_versions_for_tagging()
        cast(forms.ChoiceField, self.fields["source"]).choices = [(n, n) for n in llm_sources_available()]
        cast(forms.MultipleChoiceField, self.fields["categories"]).choices = categories
        cast(forms.ChoiceField, self.fields["shared"]).choices = [("", "—"), *((n, n) for n in datasets)]
        # Shared datasets are offered only where their folder is.
        cast(forms.ChoiceField, self.fields["over"]).choices = [
            (value, label) for value, label in DataChoice.LABELS.items() if datasets or value != DataChoice.SHARED
        ]

    def clean_recipe_ids(self) -> list[int]:
        words = self.cleaned_data["recipe_ids"].replace(",", " ").split()
        bad = [word for word in words if not word.isdigit()]
        if bad:
            raise ValidationError(f"Not a recipe id: {', '.join(bad[:5])}.")
        return [int(word) for word in words]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for field_name, problems in template_problems(
            system_template=cleaned.get("system_template", ""), user_template=cleaned.get("user_template", "")
        ).items():
            if field_name in cleaned:
                for problem in problems:
                    self.add_error(field_name, problem)
        over = cleaned.get("over")
        if over == DataChoice.SHARED and not cleaned.get("shared"):
            self.add_error("shared", "Choose a shared dataset.")
        if over == DataChoice.UPLOAD:
            upload = cleaned.get("upload")
            if upload is None:
                self.add_error("upload", "Choose a labelled JSONL file.")
            elif upload.size > DATASET_MAX_BYTES:
                self.add_error("upload", f"The file is larger than {DATASET_MAX_BYTES // (1024 * 1024)} MB.")
        return cleaned

    def dataset(self, *, user: Any) -> tuple[str, bytes]:
        """The chosen data as a labelled dataset's name and JSONL content. Raises DraftEvaluationError."""
        data = self.cleaned_data
        if data["over"] == DataChoice.SHARED:
            return data["shared"], shared_dataset_content(name=data["shared"])
        if data["over"] == DataChoice.UPLOAD:
            return data["upload"].name.rsplit(".", 1)[0] or "dataset", data["upload"].read()
        return labelled_recipes_dataset(
            user=user,
            recipe_ids=data["recipe_ids"] or None,
            query=data["query"].strip(),
            source=data["recipe_source"].strip(),
            limit=data["limit"],
        )


def prompts_tried_by(view: View) -> View:
    """The prompt playground's permission (can_try_prompts); anonymous users go to the login page."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not can_try_prompts(request.user):
            raise PermissionDenied("The prompt playground is for staff who may see prompt versions.")
        return view(request, *args, **kwargs)

    return login_required(wrapper)


def _draft_initial(request: HttpRequest) -> dict[str, Any]:
    """What the playground's "Run over a dataset" sends (its draft, source, k and categories), or on a visit
    the version of `?version=` (the active one by default)."""
    if request.method == "POST":
        fields = ("version", "system_template", "user_template", "source", "k")
        initial: dict[str, Any] = {name: request.POST[name] for name in fields if request.POST.get(name)}
        initial["categories"] = request.POST.getlist("categories")
        return initial
    versions = prompt_versions_for_tagging()
    start = None
    if request.GET.get("version", "").isdigit():
        start = versions.filter(pk=int(request.GET["version"])).first()
    start = start or prompt_version_active_row()
    templates = start or prompt_version_active()
    return {
        "version": start,
        "system_template": templates.system_template,
        "user_template": templates.user_template,
        "source": str(settings.LLM_DEFAULT_SOURCE),
    }


@prompts_tried_by
@require_http_methods(["GET", "POST"])
def draft_evaluation_new(request: HttpRequest) -> HttpResponse:
    """Run a draft of the tagging prompt over labelled data as two evaluation jobs, the draft's and the active
    version's; the playground's "Run over a dataset…" brings its draft here to choose the data."""
    categories = [(c.slug, c.name) for c in categories_list(active_only=True)]
    datasets = shared_datasets()
    starting = request.method == "POST" and request.POST.get("action") == "start"
    if starting:
        form = DraftEvaluationForm(request.POST, request.FILES, categories=categories, datasets=datasets)
    else:
        form = DraftEvaluationForm(initial=_draft_initial(request), categories=categories, datasets=datasets)
    if starting and form.is_valid():
        parent = form.cleaned_data["version"]
        try:
            name, content = form.dataset(user=request.user)
            started = draft_evaluation_start(
                content=content,
                name=name,
                draft_system=form.cleaned_data["system_template"],
                draft_user=form.cleaned_data["user_template"],
                draft_label=f"draft from {parent.label}" if parent else "draft",
                source=form.cleaned_data["source"],
                k=form.cleaned_data["k"],
                categories=form.cleaned_data["categories"] or None,
                user=request.user,
            )
        except (DomainError, DatasetError) as exc:
            form.add_error(None, getattr(exc, "message", str(exc)))
        else:
            evaluation_job_enqueue(job=started.active)
            evaluation_job_enqueue(job=started.draft)
            return redirect("evaluations:draft", job_id=started.draft.pk)
    context = {"form": form, "datasets": datasets, "selection_max": LABELLED_SELECTION_MAX}
    return render(request, "feedback/draft_evaluation_new.html", context, status=400 if form.errors else 200)


@dataclass(frozen=True)
class DraftSide:
    job: EvaluationJob
    progress: JobProgress
    failures: list[EvaluationItem]
    llm: dict[str, Any]

    @property
    def running(self) -> bool:
        return self.job.status in (EvaluationJobStatus.QUEUED, EvaluationJobStatus.RUNNING)


@dataclass(frozen=True)
class DraftMetricRow:
    slug: str
    draft: dict[str, float] | None
    active: dict[str, float] | None
    difference: str
    tone: str


def _draft_side(job: EvaluationJob) -> DraftSide:
    failures = list(job.items.filter(ok=False).order_by("position")[:FAILURES_SHOWN])
    llm = job.run.metrics.get("llm", {}) if job.run is not None else {}
    return DraftSide(job=job, progress=evaluation_job_progress(job=job), failures=failures, llm=llm)


def _draft_rows(
    draft: EvaluationRun | None, active: EvaluationRun | None
) -> tuple[list[DraftMetricRow], list[DraftMetricRow]]:
    """Per category and overall: precision, recall and F1 of each side, and the draft's F1 minus the active one's."""
    if draft is None and active is None:
        return [], []
    slugs = list(
        dict.fromkeys([*(_category_slugs(draft) if draft else []), *(_category_slugs(active) if active else [])])
    )

    def scores(run: EvaluationRun | None, values: dict[str, Any] | None) -> dict[str, float] | None:
        if run is None or values is None:
            return None
        return {key: float(values[key]) for key in ("precision", "recall", "f1")}

    def row(slug: str, d: dict[str, float] | None, a: dict[str, float] | None) -> DraftMetricRow:
        difference, tone = _difference(a["f1"] if a else None, d["f1"] if d else None)
        return DraftMetricRow(slug=slug, draft=d, active=a, difference=difference, tone=tone)

    rows = [
        row(
            slug,
            scores(draft, draft.metrics["categories"].get(slug) if draft else None),
            scores(active, active.metrics["categories"].get(slug) if active else None),
        )
        for slug in slugs
    ]
    overall = [
        row(
            "overall",
            scores(draft, draft.metrics["overall"] if draft else None),
            scores(active, active.metrics["overall"] if active else None),
        )
    ]
    return rows, overall


@prompts_tried_by
@require_GET
def draft_evaluation_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    """A draft's evaluation beside the active version's on the same data: progress while they run, then
    precision, recall and F1 per category, tokens, cost and latency per recipe, and the failures of each."""
    jobs = EvaluationJob.objects.defer("dataset_content").select_related("run", "compared_with__run")
    draft = get_object_or_404(jobs, pk=job_id, compared_with__isnull=False)
    active = draft.compared_with
    assert active is not None
    rows, overall = _draft_rows(draft.run, active.run)
    context = {
        "draft": _draft_side(draft),
        "active": _draft_side(active),
        "rows": rows,
        "overall": overall,
    }
    return render(request, "feedback/draft_evaluation_detail.html", context)


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
