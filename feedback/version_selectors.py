"""Reads for the prompt version pages: what each version of a prompt scored in evaluations, what its tagging
runs cost, what the LLM judge said of its tags and how reviewers answered them.

How a version is found in each place:
- An evaluation run names it by label ("tagging-default v2", EvaluationRun.prompt_version).
- A tagging run of the llm or hybrid strategy records its id in stats["prompt_version_id"]; its tokens and cost in
  stats too (none when the answer came from the cache: stats["cache_hit"]).
- A judgement is of an assignment of such a run; judged precision counts each verdict VERDICT_CREDIT
  (relevant 1, partly 0.5, not relevant 0), as the evaluations' judge does (feedback.evaluation.judging).
- Feedback carries the version as a foreign key (feedback_acceptance).

Every function makes a fixed number of queries, whatever the number of versions, runs or judgements.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Count, FloatField, IntegerField, Q, QuerySet, Sum
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast

from feedback.models import EvaluationRun
from feedback.selectors import Acceptance, feedback_acceptance
from prompts.judging import NOT_RELEVANT, PARTLY, RELEVANT, VERDICT_CREDIT
from prompts.models import Prompt, PromptVersion
from tagging.models import RunStatus, TaggingRun, TagJudgement


def _label(prompt: Prompt, number: int) -> str:
    # PromptVersion.label, without reading the prompt again for every version.
    return f"{prompt.name} v{number}"


@dataclass(frozen=True)
class VersionEvaluation:
    """One evaluation run of a version: its scores and, for the strategies that ask a model, its usage."""

    run_id: int
    version_id: int
    version_number: int
    dataset: str
    dataset_sha256: str
    strategy: str
    k: int | None
    source: str | None  # the model source asked (llm and hybrid evaluation jobs)
    recipes: int
    overall_f1: float
    category_f1: dict[str, float]
    categories: list[str]  # in the order the run scored them
    answered: int  # recipes the model answered (0: no model report)
    prompt_tokens: int
    completion_tokens: int
    cost: float
    judged_precision: float | None
    created_at: datetime

    @property
    def prompt_tokens_per_recipe(self) -> float | None:
        return self.prompt_tokens / self.answered if self.answered else None

    @property
    def completion_tokens_per_recipe(self) -> float | None:
        return self.completion_tokens / self.answered if self.answered else None

    @property
    def cost_per_recipe(self) -> float | None:
        return self.cost / self.answered if self.answered else None


def _evaluation(run: EvaluationRun, version: PromptVersion) -> VersionEvaluation:
    metrics: dict[str, Any] = run.metrics or {}
    scored = metrics.get("categories", {})
    ordered = [slug for slug in run.config.get("categories", []) if slug in scored]
    llm = metrics.get("llm") or {}
    tokens = llm.get("tokens") or {}
    judge = metrics.get("judge") or {}
    return VersionEvaluation(
        run_id=run.pk,
        version_id=version.pk,
        version_number=version.number,
        dataset=run.dataset,
        dataset_sha256=run.dataset_sha256,
        strategy=run.strategy,
        k=run.config.get("k"),
        source=run.config.get("source"),
        recipes=run.recipes,
        overall_f1=run.overall_f1,
        category_f1={slug: float(values["f1"]) for slug, values in scored.items()},
        categories=ordered + sorted(set(scored) - set(ordered)),
        answered=int(llm.get("answered", 0) or 0),
        prompt_tokens=int(tokens.get("prompt", 0) or 0),
        completion_tokens=int(tokens.get("completion", 0) or 0),
        cost=float(llm.get("cost", 0.0) or 0.0),
        judged_precision=judge.get("judged_precision"),
        created_at=run.created_at,
    )


def _evaluations(prompt: Prompt, versions: Sequence[PromptVersion]) -> list[VersionEvaluation]:
    """Every evaluation run of `versions`, oldest first: one query."""
    by_label = {_label(prompt, v.number): v for v in versions}
    runs = EvaluationRun.objects.filter(prompt_version__in=list(by_label)).order_by("created_at", "id")
    return [_evaluation(run, by_label[str(run.prompt_version)]) for run in runs]


@dataclass(frozen=True)
class EvaluationUsage:
    """What the model answered and cost over some evaluation runs (an answer reused from the cache counts what it
    cost when asked: llm_report's figures describe the strategy, not a bill)."""

    runs: int
    answered: int
    prompt_tokens: int
    completion_tokens: int
    cost: float

    @property
    def prompt_tokens_per_recipe(self) -> float:
        return self.prompt_tokens / self.answered

    @property
    def completion_tokens_per_recipe(self) -> float:
        return self.completion_tokens / self.answered

    @property
    def cost_per_recipe(self) -> float:
        return self.cost / self.answered


def evaluation_usage(evaluations: Sequence[VersionEvaluation]) -> EvaluationUsage | None:
    """The model usage of `evaluations` summed; None when none of them asked a model."""
    asked = [e for e in evaluations if e.answered]
    if not asked:
        return None
    return EvaluationUsage(
        runs=len(asked),
        answered=sum(e.answered for e in asked),
        prompt_tokens=sum(e.prompt_tokens for e in asked),
        completion_tokens=sum(e.completion_tokens for e in asked),
        cost=sum(e.cost for e in asked),
    )


@dataclass(frozen=True)
class EvaluationSeries:
    """The evaluation runs of one dataset (by content), strategy, k and model source, one per version that has one
    (its latest), in version order: what the charts over versions draw. Runs that differ in any of these are not
    compared."""

    dataset: str
    dataset_sha256: str
    strategy: str
    k: int | None
    source: str | None
    runs: list[VersionEvaluation]
    categories: list[str]


def _series(evaluations: Sequence[VersionEvaluation]) -> list[EvaluationSeries]:
    latest: dict[tuple[str, str, int | None, str | None], dict[int, VersionEvaluation]] = defaultdict(dict)
    for e in evaluations:  # oldest first: a later run of the same version replaces an earlier one
        latest[(e.dataset_sha256, e.strategy, e.k, e.source)][e.version_number] = e
    result = []
    for (sha256, strategy, k, source), by_number in latest.items():
        runs = [by_number[number] for number in sorted(by_number)]
        categories = list(dict.fromkeys(slug for run in runs for slug in run.categories))
        result.append(
            EvaluationSeries(
                dataset=runs[-1].dataset,
                dataset_sha256=sha256,
                strategy=strategy,
                k=k,
                source=source,
                runs=runs,
                categories=categories,
            )
        )
    # The series with the most versions first: the one that says most about the prompt's history.
    return sorted(result, key=lambda s: (-len(s.runs), s.dataset, s.strategy, s.k or 0, s.source or ""))


@dataclass(frozen=True)
class RunUsage:
    """What the succeeded tagging runs of a version used: the runs that asked the model and those answered from
    the cache (which cost nothing; per recipe counts the runs that asked)."""

    runs: int = 0
    cache_hits: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0

    @property
    def called(self) -> int:
        return self.runs - self.cache_hits

    @property
    def input_tokens_per_recipe(self) -> float | None:
        return self.input_tokens / self.called if self.called else None

    @property
    def output_tokens_per_recipe(self) -> float | None:
        return self.output_tokens / self.called if self.called else None

    @property
    def cost_per_recipe(self) -> float | None:
        return self.cost / self.called if self.called else None


def _stat(key: str, output: IntegerField | FloatField, prefix: str = "stats") -> Cast:
    return Cast(KeyTextTransform(key, prefix), output_field=output)


def _tagging_runs(version_ids: Sequence[int]) -> QuerySet[TaggingRun]:
    return TaggingRun.objects.filter(stats__prompt_version_id__in=list(version_ids), status=RunStatus.SUCCEEDED)


def _run_usage(version_ids: Sequence[int]) -> dict[int, RunUsage]:
    """Version id → the usage of its succeeded tagging runs: one query."""
    rows = (
        _tagging_runs(version_ids)
        .values(version_id=_stat("prompt_version_id", IntegerField()))
        .annotate(
            runs=Count("id"),
            cache_hits=Count("id", filter=Q(stats__cache_hit=True)),
            input_tokens=Sum(_stat("input_tokens", IntegerField())),
            output_tokens=Sum(_stat("output_tokens", IntegerField())),
            cost=Sum(_stat("cost", FloatField())),
        )
        .order_by("version_id")
    )
    return {
        row["version_id"]: RunUsage(
            runs=row["runs"],
            cache_hits=row["cache_hits"],
            input_tokens=row["input_tokens"] or 0,
            output_tokens=row["output_tokens"] or 0,
            cost=row["cost"] or 0.0,
        )
        for row in rows
    }


@dataclass(frozen=True)
class JudgedPrecision:
    """The LLM judge's verdicts on a group of tags (a category, or all of a version's)."""

    key: str
    relevant: int = 0
    partly: int = 0
    not_relevant: int = 0

    @property
    def judged(self) -> int:
        return self.relevant + self.partly + self.not_relevant

    @property
    def precision(self) -> float | None:
        if not self.judged:
            return None
        credit = (
            self.relevant * VERDICT_CREDIT[RELEVANT]
            + self.partly * VERDICT_CREDIT[PARTLY]
            + self.not_relevant * VERDICT_CREDIT[NOT_RELEVANT]
        )
        return credit / self.judged


def _verdicts(verdict: str) -> Count:
    return Count("id", filter=Q(verdict=verdict))


def _judgements(version_ids: Sequence[int]) -> QuerySet[TagJudgement]:
    return TagJudgement.objects.filter(
        assignment__run__stats__prompt_version_id__in=list(version_ids),
        assignment__run__status=RunStatus.SUCCEEDED,
    )


def _judged_by_version(version_ids: Sequence[int]) -> dict[int, JudgedPrecision]:
    """Version id → the verdicts on its runs' tags (every judge's): one query."""
    rows = (
        _judgements(version_ids)
        .values(version_id=_stat("prompt_version_id", IntegerField(), prefix="assignment__run__stats"))
        .annotate(relevant=_verdicts(RELEVANT), partly=_verdicts(PARTLY), not_relevant=_verdicts(NOT_RELEVANT))
        .order_by("version_id")
    )
    return {
        row["version_id"]: JudgedPrecision(
            key=str(row["version_id"]),
            relevant=row["relevant"],
            partly=row["partly"],
            not_relevant=row["not_relevant"],
        )
        for row in rows
    }


def _judged_by_category(version_id: int) -> list[JudgedPrecision]:
    rows = (
        _judgements([version_id])
        .values("assignment__tag__category__slug")
        .annotate(relevant=_verdicts(RELEVANT), partly=_verdicts(PARTLY), not_relevant=_verdicts(NOT_RELEVANT))
        .order_by("assignment__tag__category__slug")
    )
    return [
        JudgedPrecision(
            key=row["assignment__tag__category__slug"],
            relevant=row["relevant"],
            partly=row["partly"],
            not_relevant=row["not_relevant"],
        )
        for row in rows
    ]


@dataclass(frozen=True)
class VersionNumbers:
    """Everything the page of one version shows."""

    version: PromptVersion
    versions: list[PromptVersion]  # every version of its prompt, by number (the charts' x axis)
    evaluations: list[VersionEvaluation]  # of this version, newest first
    series: list[EvaluationSeries]  # of every version of the prompt
    usage: RunUsage
    judged: JudgedPrecision
    judged_by_category: list[JudgedPrecision]
    acceptance_by_category: list[Acceptance]

    @property
    def evaluation_usage(self) -> EvaluationUsage | None:
        return evaluation_usage(self.evaluations)

    @property
    def acceptance(self) -> Acceptance | None:
        """Over every category; None before any review."""
        rows = self.acceptance_by_category
        if not rows:
            return None
        return Acceptance(
            key="all",
            accepted=sum(a.accepted for a in rows),
            rejected=sum(a.rejected for a in rows),
            added=sum(a.added for a in rows),
        )


def _prompt_versions(prompt: Prompt) -> list[PromptVersion]:
    versions = list(PromptVersion.objects.filter(prompt=prompt).order_by("number", "id"))
    for version in versions:
        version.prompt = prompt  # their label reads it: no query per version
    return versions


def prompt_version_numbers(*, version: PromptVersion) -> VersionNumbers:
    """The numbers of `version` (its prompt read with it): its evaluation runs, among those of every version of
    its prompt for the charts, its tagging runs' usage, its tags' judged precision and their acceptance by
    reviewers, per category."""
    versions = _prompt_versions(version.prompt)
    evaluations = _evaluations(version.prompt, versions)
    return VersionNumbers(
        version=version,
        versions=versions,
        evaluations=[e for e in reversed(evaluations) if e.version_id == version.pk],
        series=_series(evaluations),
        usage=_run_usage([version.pk]).get(version.pk, RunUsage()),
        judged=_judged_by_version([version.pk]).get(version.pk, JudgedPrecision(key=str(version.pk))),
        judged_by_category=_judged_by_category(version.pk),
        acceptance_by_category=feedback_acceptance(by="category", prompt_version_id=version.pk),
    )


@dataclass(frozen=True)
class VersionHeadline:
    """One version's row in its prompt's overview."""

    version: PromptVersion
    evaluations: list[VersionEvaluation] = field(default_factory=list)  # newest first
    usage: RunUsage = field(default_factory=RunUsage)
    judged: JudgedPrecision | None = None
    acceptance: Acceptance | None = None

    @property
    def latest_evaluation(self) -> VersionEvaluation | None:
        return self.evaluations[0] if self.evaluations else None

    @property
    def evaluation_usage(self) -> EvaluationUsage | None:
        return evaluation_usage(self.evaluations)


@dataclass(frozen=True)
class PromptOverview:
    prompt: Prompt
    versions: list[VersionHeadline]  # by number
    series: list[EvaluationSeries]


def prompt_versions_overview(*, prompt: Prompt) -> PromptOverview:
    """Every version of `prompt` with its headline numbers side by side, and the evaluation series over them."""
    versions = _prompt_versions(prompt)
    ids = [v.pk for v in versions]
    evaluations = _evaluations(prompt, versions)
    by_version: dict[int, list[VersionEvaluation]] = defaultdict(list)
    for evaluation in reversed(evaluations):
        by_version[evaluation.version_id].append(evaluation)
    usage, judged = _run_usage(ids), _judged_by_version(ids)
    labels = {_label(prompt, v.number) for v in versions}
    acceptance = {a.key: a for a in feedback_acceptance(by="prompt_version") if a.key in labels}
    return PromptOverview(
        prompt=prompt,
        versions=[
            VersionHeadline(
                version=v,
                evaluations=by_version.get(v.pk, []),
                usage=usage.get(v.pk, RunUsage()),
                judged=judged.get(v.pk),
                acceptance=acceptance.get(_label(prompt, v.number)),
            )
            for v in versions
        ],
        series=_series(evaluations),
    )


def prompt_version_by_label(*, label: str) -> PromptVersion | None:
    """The version an evaluation run names ("tagging-default v2"), None when no such version exists (any more)."""
    name, _, number = label.rpartition(" v")
    if not name or not number.isdigit():
        return None
    return PromptVersion.objects.select_related("prompt").filter(prompt__name=name, number=int(number)).first()
