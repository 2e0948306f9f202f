"""Hand-made rows for the prompt version pages: versions of a prompt, their evaluation runs, tagging runs with
usage, judgements and reviews."""

from __future__ import annotations

from typing import Any

from feedback.models import EvaluationRun
from prompts.models import Prompt, PromptVersion
from tagging.models import RunStatus, TagAssignment, TaggingRun, TagJudgement
from tagging.tests.conftest import RecipeFactory, TagAssignmentFactory, TaggingRunFactory
from taxonomy.models import Tag


def versions_of(name: str, count: int) -> list[PromptVersion]:
    """A tagging prompt `name` with versions 1..count, the last one active."""
    prompt = Prompt.objects.create(name=name)
    return [
        PromptVersion.objects.create(
            prompt=prompt,
            number=number,
            system_template=f"You tag recipes ({number}).",
            user_template="$recipe",
            is_active=number == count,
        )
        for number in range(1, count + 1)
    ]


def evaluation(
    version: PromptVersion,
    *,
    f1: float,
    categories: dict[str, float],
    dataset: str = "themealdb",
    strategy: str = "llm",
    k: int = 3,
    source: str = "default",
    llm: dict[str, Any] | None = None,
    judged_precision: float | None = None,
) -> EvaluationRun:
    """An evaluation run of `version` scoring `f1` overall and `categories` (slug -> F1)."""
    metrics: dict[str, Any] = {
        "overall": {"precision": f1, "recall": f1, "f1": f1},
        "categories": {
            slug: {"precision": value, "recall": value, "f1": value, "macro_f1": value, "coverage": 1.0, "support": 10}
            for slug, value in categories.items()
        },
        "latency_ms": {"p50": 10.0, "p95": 20.0},
        "adherence": {"unknown_tags": 0, "over_k": 0},
    }
    if llm is not None:
        metrics["llm"] = llm
    if judged_precision is not None:
        metrics["judge"] = {"judged_precision": judged_precision}
    return EvaluationRun.objects.create(
        dataset=dataset,
        dataset_sha256=(dataset.encode().hex() * 64)[:64],
        strategy=strategy,
        config={"k": k, "folds": None, "train": "database", "categories": list(categories), "source": source},
        prompt_version=version.label,
        code_version="abc1234",
        metrics=metrics,
        recipes=20,
        overall_f1=f1,
        duration_seconds=3.0,
    )


def llm_usage(*, answered: int, prompt: int, completion: int, cost: float) -> dict[str, Any]:
    """An evaluation's model report (llm_report) with these totals."""
    return {
        "answered": answered,
        "recipes": answered,
        "tokens": {"prompt": prompt, "completion": completion, "cached": 0},
        "cost": cost,
    }


def tagging_run(
    version: PromptVersion | None, *, status: str = RunStatus.SUCCEEDED, tags: tuple[Tag, ...] = (), **stats: Any
) -> TaggingRun:
    """A run of the llm strategy that recorded `version` (and `stats`), with an assignment per tag in `tags`."""
    recorded = {"prompt_version_id": version.pk, "prompt_version": version.label} if version else {}
    run = TaggingRunFactory(
        recipe=RecipeFactory(), strategy="llm", status=status, stats={**recorded, "cache_hit": False, **stats}
    )
    for rank, tag in enumerate(tags, start=1):
        TagAssignmentFactory(run=run, tag=tag, score=0.8, rank=rank)
    return run


def judged(run: TaggingRun, verdicts: dict[Tag, str], *, judge: str = "judging-default v1") -> None:
    """The LLM judge's `verdicts` on the run's tags."""
    assignments = {a.tag_id: a for a in TagAssignment.objects.filter(run=run)}
    for position, (tag, verdict) in enumerate(verdicts.items(), start=1):
        TagJudgement.objects.create(
            assignment=assignments[tag.pk],
            verdict=verdict,
            prompt_version=judge,
            source="default",
            shuffle_seed=run.pk,
            position=position,
        )
