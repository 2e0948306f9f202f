"""Evaluation runs: a tagging strategy scored on a labelled dataset against the reference baselines, stored."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings

from autotagger.embeddings import EmbeddingMode, fast_model_available, fast_model_path
from feedback.evaluation import runner
from feedback.evaluation.datasets import Dataset, DatasetSummary, dataset_parse, dataset_read, dataset_scan
from feedback.evaluation.errors import EvaluationError
from feedback.evaluation.judging import JudgedPrediction, judge_metrics
from feedback.evaluation.provenance import code_version
from feedback.models import EvaluationItem, EvaluationJob, EvaluationRun
from feedback.services.labels import User, user_or_none
from feedback.training import labelled_data
from prompts.judging import JudgedTag
from prompts.models import PromptPurpose
from prompts.selectors import prompt_version_active
from prompts.sources import LLMError, llm_source_get
from tagging.models import Strategy
from tagging.services.judging import tags_judge
from tagging.services.recipes import embeddings_cached
from tagging.services.runs import recipes_predict
from taxonomy.limits import MAX_TAGS_PER_CATEGORY
from taxonomy.models import Category

logger = logging.getLogger(__name__)


def _evaluation_options_check(*, strategy: str, k: int, folds: int | None, train_path: Path | None) -> None:
    if strategy in (Strategy.LLM, Strategy.HYBRID):
        raise EvaluationError(
            f"The {strategy} strategy is evaluated by an evaluation job on the worker "
            "(feedback.services.llm_evaluation.evaluation_job_start), which asks the model once per recipe."
        )
    if strategy != Strategy.SIMILARITY:
        raise EvaluationError(f"Unknown strategy {strategy!r}: the choices are {', '.join(Strategy.values)}.")
    if not 1 <= k <= MAX_TAGS_PER_CATEGORY:
        raise EvaluationError(f"k must be between 1 and {MAX_TAGS_PER_CATEGORY}, not {k}.")
    if folds is not None and train_path is not None:
        raise EvaluationError(
            "Give folds (cross-validate on the dataset) or a training dataset (learn from it), not both."
        )
    if folds is not None and folds < 2:
        raise EvaluationError(f"folds must be at least 2, not {folds}.")


def _dataset_load(path: Path, *, role: str) -> Dataset:
    if not path.is_file():
        raise EvaluationError(f"The {role} dataset {path} does not exist.")
    # DatasetError (a line that is no labelled recipe) reaches the caller as it is: its message names the line.
    dataset = dataset_read(path)
    if not dataset.recipes:
        raise EvaluationError(f"The {role} dataset {path} holds no recipes.")
    return dataset


def _dataset_scan(path: Path) -> DatasetSummary:
    """`_dataset_load` without keeping the recipes (a file of any size)."""
    if not path.is_file():
        raise EvaluationError(f"The evaluation dataset {path} does not exist.")
    with path.open("rb") as handle:
        summary = dataset_scan(name=path.stem, lines=handle, where=path.name)
    if not summary.recipes:
        raise EvaluationError(f"The evaluation dataset {path} holds no recipes.")
    return summary


def _categories_check(categories: list[str] | None, *, dataset: Dataset | DatasetSummary) -> list[str] | None:
    if not dataset.vocabulary:
        raise EvaluationError(f"The dataset {dataset.name} has no tags to score against.")
    if categories is None:
        return None
    wanted = list(dict.fromkeys(c.strip() for c in categories if c.strip()))
    if not wanted:
        raise EvaluationError("Name at least one category, or none to score them all.")
    unknown = [c for c in wanted if c not in dataset.vocabulary]
    if unknown:
        raise EvaluationError(
            f"The dataset {dataset.name} has no tags in {', '.join(unknown)}; "
            f"its categories are {', '.join(dataset.vocabulary)}."
        )
    return wanted


def _taxonomy_check(categories: list[str], *, dataset: Dataset | DatasetSummary) -> None:
    """Without folds or training data the taxonomy's categories are scored: some must match the file's."""
    if not Category.objects.filter(slug__in=categories, active=True).exists():
        raise EvaluationError(
            f"None of the categories of {dataset.name} ({', '.join(categories)}) is an active category of the "
            "taxonomy, so the tagger as deployed has nothing to score: import the taxonomy, or evaluate with "
            "folds or a training dataset."
        )


def _embed(texts: Sequence[str]) -> np.ndarray:
    return embeddings_cached(texts=list(texts))


def _embed_fast(texts: Sequence[str]) -> np.ndarray:
    return embeddings_cached(texts=list(texts), mode=EmbeddingMode.FAST)


def _predictions_judge(
    *,
    test: Dataset,
    categories: Sequence[str],
    predicted: Sequence[dict[str, set[str]]],
    gold: Sequence[dict[str, set[str]]],
    source: str,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Ask the LLM `source` to judge the tags `predicted` for each recipe of `test` (one call per recipe with
    tags, in the active judging prompt's wording, the tags shuffled by a seed from the dataset and the recipe's
    id): judged precision per category and overall, Cohen's kappa with `gold` (feedback.evaluation.judging),
    and the failures and dropped or missing verdicts. A recipe whose call fails is counted and left out."""
    config = llm_source_get(name=source)
    templates = prompt_version_active(purpose=PromptPurpose.JUDGING)
    judged: list[JudgedPrediction] = []
    recipes = calls = missing = unknown = failures = 0
    for recipe, tagged, labels in zip(test.recipes, predicted, gold, strict=True):
        names = test.vocabulary
        tags = [
            JudgedTag(category_slug=slug, category_name=slug, slug=tag, name=names.get(slug, {}).get(tag, tag))
            for slug in categories
            for tag in sorted(tagged.get(slug, ()))
        ]
        if not tags:
            continue
        seed = int(hashlib.sha256(f"{test.sha256}:{recipe.id}".encode()).hexdigest()[:12], 16)
        try:
            _, validated, attempts = tags_judge(
                recipe=recipe.text, tags=tags, source=config, templates=templates, seed=seed
            )
        except LLMError as exc:
            failures += 1
            logger.warning("The judge gave no verdicts on recipe %s: %s", recipe.id, exc)
            continue
        recipes, calls = recipes + 1, calls + attempts
        missing, unknown = missing + validated.missing, unknown + validated.unknown_dropped
        for key, verdict in validated.verdicts.items():
            category, tag = key.split("/", 1)
            in_gold = tag in labels[category] if category in labels else None
            judged.append(JudgedPrediction(category=category, tag=tag, verdict=verdict.verdict, in_gold=in_gold))
        if progress is not None and recipes % 50 == 0:
            progress(f"Judged the tags of {recipes} recipes")
    return {
        **judge_metrics(judged, categories=categories),
        "source": config.name,
        "prompt_version": templates.label,
        "recipes_judged": recipes,
        "calls": calls,
        "failures": failures,
        "missing_verdicts": missing,
        "unknown_dropped": unknown,
    }


def evaluation_result_judge(
    *, result: runner.EvaluationResult, test: Dataset, source: str, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Judge the tagger's predictions of an evaluation (in this process) and add the report to
    `result.extra["judge"]`. Raises LLMNotConfigured for an unknown source."""
    report = _predictions_judge(
        test=test,
        categories=result.categories,
        predicted=result.predicted,
        gold=result.gold,
        source=source,
        progress=progress,
    )
    result.extra["judge"] = report
    return report


def evaluation_job_judge(*, job: EvaluationJob, source: str) -> EvaluationRun:
    """Judge what an llm or hybrid evaluation job's model predicted for each recipe (its items) and add the
    report to the metrics of the job's run under "judge" (see _predictions_judge). Raises EvaluationError for a
    job without a run or a judge source that cannot be used."""
    run = job.run
    if run is None:
        raise EvaluationError(f"Evaluation job #{job.pk} has no evaluation run to judge.")
    try:
        llm_source_get(name=source)
    except LLMError as exc:
        raise EvaluationError(f"The judge cannot be asked: {exc}") from exc
    test = dataset_parse(name=job.dataset, lines=bytes(job.dataset_content).splitlines(keepends=True))
    categories, tags_by_name = runner.database_categories(test=test, categories=job.categories)
    predicted: list[dict[str, set[str]]] = [{} for _ in test.recipes]
    for item in EvaluationItem.objects.filter(job=job, ok=True):
        predicted[item.position] = {slug: {tag for tag, _ in tags} for slug, tags in item.predicted.items()}
    report = _predictions_judge(
        test=test,
        categories=categories,
        predicted=predicted,
        gold=runner.database_gold(test, tags_by_name),
        source=source,
    )
    run.metrics = {**run.metrics, "judge": report}
    run.save(update_fields=["metrics"])
    return run


def evaluation_run(
    *,
    path: Path,
    k: int,
    strategy: str,
    categories: list[str] | None,
    folds: int | None,
    train_path: Path | None,
    user: User = None,
    progress: Callable[[str], None] | None = None,
    judge_source: str | None = None,
    embedding: str = EmbeddingMode.FULL,
) -> EvaluationRun:
    """Score `strategy` on the labelled dataset at `path`, against the reference baselines, and store the run.
    With `embedding` "fast", recipes and tags are embedded by the fast mode's static model (and the tagger as
    deployed is its learned state).

    With `folds`, cross-validate on the dataset (a fold's recipes never reach the tagger that scores
    them); with `train_path`, learn from that dataset and score this one; with neither, tag with what
    the database holds and only compare with the file's labels. `categories` (dataset category slugs)
    limits the scoring; None scores every category of the dataset. With `judge_source`, an LLM judge rates the
    tagger's predicted tags too (evaluation_result_judge) and the metrics hold its report under "judge".

    Raises EvaluationError for bad options (a judge source that cannot be used too) or a missing or empty file,
    DatasetError (with the line) for a file that is no labelled dataset.
    """
    _evaluation_options_check(strategy=strategy, k=k, folds=folds, train_path=train_path)
    if embedding not in EmbeddingMode.values:
        raise EvaluationError(f"Unknown embedding {embedding!r}: the choices are {', '.join(EmbeddingMode.values)}.")
    if embedding == EmbeddingMode.FAST and not fast_model_available():
        raise EvaluationError(
            f"Fast mode has not been distilled into {fast_model_path()}: run `python manage.py embedding_distill`."
        )
    embed = _embed_fast if embedding == EmbeddingMode.FAST else _embed
    if judge_source is not None:
        try:
            llm_source_get(name=judge_source)  # checked first: finding out after the evaluation would waste it
        except LLMError as exc:
            raise EvaluationError(f"The judge cannot be asked: {exc}") from exc
    started = time.perf_counter()
    if folds is None and train_path is None and judge_source is None:
        result = _evaluate_streamed(path=path, k=k, categories=categories, embedding=embedding, progress=progress)
        return _run_store(result=result, strategy=strategy, k=k, embedding=embedding, started=started, user=user)
    test = _dataset_load(path, role="evaluation")
    train = _dataset_load(train_path, role="training") if train_path is not None else None
    wanted = _categories_check(categories, dataset=test)
    if folds is not None and folds > len(test.recipes):
        raise EvaluationError(f"folds ({folds}) cannot exceed the dataset's {len(test.recipes)} recipes.")
    if progress is not None:
        progress(f"Read {len(test.recipes)} recipes from {path.name}")
        if train is not None and train_path is not None:
            progress(f"Read {len(train.recipes)} training recipes from {train_path.name}")
    if folds is None and train is None:
        _taxonomy_check(wanted or list(test.vocabulary), dataset=test)
        result = runner.evaluate_with_database(
            test=test,
            k=k,
            categories=wanted,
            embed=embed,
            predict=partial(recipes_predict, mode=embedding),
            labelled=labelled_data(mode=embedding),
            progress=progress,
        )
    else:
        result = runner.evaluate(
            test=test, train=train, folds=folds, k=k, categories=wanted, embed=embed, progress=progress
        )
    if judge_source is not None:
        evaluation_result_judge(result=result, test=test, source=judge_source, progress=progress)
    return _run_store(result=result, strategy=strategy, k=k, embedding=embedding, started=started, user=user)


def _evaluate_streamed(
    *, path: Path, k: int, categories: list[str] | None, embedding: str, progress: Callable[[str], None] | None
) -> runner.EvaluationResult:
    """The tagger as deployed scored on a file of any size, EVALUATION_STREAM_BATCH recipes at a time (memory
    stays flat: runner.evaluate_with_database_streamed). The judge, which reads every recipe's predictions,
    uses the in-memory path."""
    summary = _dataset_scan(path)
    wanted = _categories_check(categories, dataset=summary)
    if progress is not None:
        progress(f"Read {summary.recipes} recipes from {path.name}")
    _taxonomy_check(wanted or list(summary.vocabulary), dataset=summary)
    return runner.evaluate_with_database_streamed(
        path=path,
        summary=summary,
        k=k,
        categories=wanted,
        embed=_embed_fast if embedding == EmbeddingMode.FAST else _embed,
        predict=partial(recipes_predict, mode=embedding),
        labelled=labelled_data(mode=embedding),
        batch_size=int(settings.EVALUATION_STREAM_BATCH),
        progress=progress,
    )


def _run_store(
    *, result: runner.EvaluationResult, strategy: str, k: int, embedding: str, started: float, user: User
) -> EvaluationRun:
    return EvaluationRun.objects.create(
        dataset=result.dataset,
        dataset_sha256=result.dataset_sha256,
        strategy=strategy,
        # "train" is the training dataset's name, or "database" when the tagger used what the database holds.
        config={
            "k": k,
            "folds": result.config.get("folds"),
            "train": result.config.get("train"),
            "categories": result.categories,
            # Only when fast: a run's config reads as before for the full model.
            **({"embedding": embedding} if embedding != EmbeddingMode.FULL else {}),
        },
        prompt_version=None,
        code_version=code_version(),
        metrics=result.as_json(),
        recipes=result.recipes,
        overall_f1=result.report.overall_f1,
        duration_seconds=time.perf_counter() - started,
        created_by=user_or_none(user=user),
    )
