"""Evaluating the strategies that ask a model (llm, hybrid) on a labelled dataset: a job the worker does a
chunk of recipes at a time, each recipe's answer kept, so it resumes where it stopped, asks nothing twice
(an answer to the same question, by cache key, is reused), and ends in an EvaluationRun with the same
scores as any other evaluation plus what the model cost."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import close_old_connections, connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from autotagger.errors import DomainError
from feedback.evaluation import metrics, runner
from feedback.evaluation.confidence import confidence_calibration_fit, stated_pairs
from feedback.evaluation.datasets import Dataset, DatasetRecipe, dataset_parse, dataset_recipes_at
from feedback.evaluation.errors import EvaluationError
from feedback.evaluation.provenance import code_version
from feedback.models import EvaluationItem, EvaluationJob, EvaluationJobStatus, EvaluationRun
from feedback.training import labelled_data
from prompts.gateway import llm_call_budget_seconds
from prompts.rendering import PromptTemplates
from prompts.selectors import prompt_version_active
from prompts.sources import LLMError, LLMSourceConfig
from tagging.models import Strategy
from tagging.services.config import (
    TaggingConfig,
    TaggingError,
    category_requests,
    llm_source_resolve,
    user_or_none,
)
from tagging.services.llm_runs import llm_cache_key, text_predict_with_llm
from tagging.services.recipes import embeddings_cached, recipe_content_hash
from tagging.taggers.base import CategoryRequest
from taxonomy.limits import MAX_TAGS_PER_CATEGORY

logger = logging.getLogger(__name__)

LLM_STRATEGIES = (Strategy.LLM, Strategy.HYBRID)
# Errors kept in the report, to show what went wrong without repeating it for every recipe.
FAILURE_EXAMPLES = 5

Progress = Callable[[int, int], None]  # (recipes done, total)


class EvaluationJobBusy(DomainError):
    """Another copy of the job's task holds it (until its lease runs out)."""

    code = "evaluation_job_busy"
    status = 409


@dataclass(frozen=True)
class JobProgress:
    done: int
    failed: int
    total: int

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.total) if self.total else 100


def _lease() -> timedelta:
    # Renewed after every recipe: a live copy never holds a recipe longer than one model call's budget.
    return timedelta(seconds=llm_call_budget_seconds() + 60)


def evaluation_job_start(
    *,
    content: bytes,
    name: str,
    strategy: str,
    source: str | None,
    k: int,
    categories: list[str] | None,
    user: AbstractBaseUser | AnonymousUser | None = None,
    prompt: PromptTemplates | None = None,
    compared_with: EvaluationJob | None = None,
) -> EvaluationJob:
    """Check the request and store a queued job (the caller enqueues it, or runs it with
    `evaluation_job_run_here`), asking with `prompt` (None: the active version now, kept for the whole job).
    Raises EvaluationError naming what is wrong (nothing is stored), DatasetError for a file that is no
    labelled dataset."""
    if strategy not in LLM_STRATEGIES:
        raise EvaluationError(
            f"An evaluation job runs the strategies that ask a model ({', '.join(LLM_STRATEGIES)}), not {strategy!r}."
        )
    if not 1 <= k <= MAX_TAGS_PER_CATEGORY:
        raise EvaluationError(f"k must be between 1 and {MAX_TAGS_PER_CATEGORY}, not {k}.")
    dataset = dataset_parse(name=name, lines=content.splitlines(keepends=True))
    if not dataset.recipes:
        raise EvaluationError(f"The dataset {name} holds no recipes.")
    if not dataset.vocabulary:
        raise EvaluationError(f"The dataset {name} has no tags to score against.")
    wanted = list(dataset.vocabulary)
    if categories is not None:
        wanted = list(dict.fromkeys(c.strip() for c in categories if c.strip()))
        unknown = [c for c in wanted if c not in dataset.vocabulary]
        if unknown or not wanted:
            raise EvaluationError(
                f"The dataset {name} has no tags in {', '.join(unknown) or 'no category'}; "
                f"its categories are {', '.join(dataset.vocabulary)}."
            )
    try:
        slugs, _ = runner.database_categories(test=dataset, categories=wanted)
        config = TaggingConfig(strategy=strategy, k=k, categories=tuple(slugs), source=source)
        resolved = llm_source_resolve(config=config)
        category_requests(config=config)
    except ValueError as exc:
        raise EvaluationError(
            f"None of the categories of {name} ({', '.join(wanted)}) is an active category of the taxonomy."
        ) from exc
    except TaggingError as exc:
        raise EvaluationError(exc.message, details=exc.details) from exc
    prompt = prompt or prompt_version_active()
    return EvaluationJob.objects.create(
        prompt_label=prompt.label,
        prompt_version_id=prompt.version_id,
        system_template=prompt.system_template,
        user_template=prompt.user_template,
        compared_with=compared_with,
        dataset=dataset.name,
        dataset_sha256=dataset.sha256,
        dataset_content=content,
        strategy=strategy,
        source=resolved.name,
        k=k,
        categories=slugs,
        total=len(dataset.recipes),
        created_by=user_or_none(user=user),
    )


def evaluation_job_start_from_file(
    *,
    path: Path,
    strategy: str,
    source: str | None,
    k: int,
    categories: list[str] | None,
    user: AbstractBaseUser | AnonymousUser | None = None,
) -> EvaluationJob:
    if not path.is_file():
        raise EvaluationError(f"The evaluation dataset {path} does not exist.")
    return evaluation_job_start(
        content=path.read_bytes(),
        name=path.stem,
        strategy=strategy,
        source=source,
        k=k,
        categories=categories,
        user=user,
    )


def evaluation_job_progress(*, job: EvaluationJob) -> JobProgress:
    items = EvaluationItem.objects.filter(job=job)
    return JobProgress(done=items.count(), failed=items.filter(ok=False).count(), total=job.total)


def evaluation_jobs_recent(*, limit: int) -> list[EvaluationJob]:
    """The latest jobs, newest first, each with `done` and `failed` counted in the same query."""
    return list(
        EvaluationJob.objects.defer("dataset_content")
        .annotate(done=Count("items"), failed=Count("items", filter=Q(items__ok=False)))
        .order_by("-created_at", "-id")[:limit]
    )


def _lease_take(job_id: int) -> bool:
    now = timezone.now()
    taken = EvaluationJob.objects.filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now),
        pk=job_id,
        status__in=[EvaluationJobStatus.QUEUED, EvaluationJobStatus.RUNNING],
    ).update(status=EvaluationJobStatus.RUNNING, lease_until=now + _lease())
    if taken:
        EvaluationJob.objects.filter(pk=job_id, started_at__isnull=True).update(started_at=now)
    return bool(taken)


def _lease_renew(job_id: int) -> None:
    EvaluationJob.objects.filter(pk=job_id).update(lease_until=timezone.now() + _lease())


def job_prompt(*, job: EvaluationJob) -> PromptTemplates:
    """The templates the job asks with: those it recorded when it started (the active version for a job from
    before prompts were recorded)."""
    if not job.system_template:
        return prompt_version_active()
    return PromptTemplates(
        label=job.prompt_label,
        system_template=job.system_template,
        user_template=job.user_template,
        version_id=job.prompt_version_id,
    )


def _dataset(job: EvaluationJob) -> Dataset:
    return dataset_parse(name=job.dataset, lines=bytes(job.dataset_content).splitlines(keepends=True))


@dataclass
class _Answer:
    position: int
    recipe: DatasetRecipe
    cache_key: str
    predicted: dict[str, list[tuple[str, float]]]
    stats: dict[str, Any]
    latency_ms: float
    error: str = ""


def _ask(
    recipe: DatasetRecipe,
    embedding: np.ndarray,
    config: TaggingConfig,
    requests: Sequence[CategoryRequest],
    source: LLMSourceConfig,
    prompt: PromptTemplates,
) -> tuple[dict[str, list[tuple[str, float]]], dict[str, Any], float, str]:
    started = time.perf_counter()
    try:
        predicted, stats = text_predict_with_llm(
            text=recipe.text, embedding=embedding, config=config, requests=requests, source=source, prompt=prompt
        )
        return predicted, stats, (time.perf_counter() - started) * 1000, ""
    except LLMError as exc:
        return {}, {}, (time.perf_counter() - started) * 1000, exc.message


def _ask_in_thread(*args: Any) -> tuple[dict[str, list[tuple[str, float]]], dict[str, Any], float, str]:
    # A pool thread has its own database connection: closed here, or it outlives the job.
    try:
        return _ask(*args)
    finally:
        connection.close()


def _store(job: EvaluationJob, answer: _Answer, *, cached: bool) -> None:
    EvaluationItem.objects.bulk_create(
        [
            EvaluationItem(
                job=job,
                position=answer.position,
                recipe_id=answer.recipe.id,
                cache_key=answer.cache_key,
                ok=not answer.error,
                predicted={slug: [[tag, score] for tag, score in tags] for slug, tags in answer.predicted.items()},
                stats=answer.stats,
                latency_ms=answer.latency_ms,
                cached=cached,
                error=answer.error,
            )
        ],
        # Another copy of the task (a re-delivery) may have stored it meanwhile: the first answer stays.
        ignore_conflicts=True,
    )
    _lease_renew(job.pk)


def evaluation_job_step(*, job_id: int, progress: Progress | None = None) -> bool:
    """Answer the next chunk (EVALUATION_CHUNK_SIZE) of the job's recipes, EVALUATION_LLM_CONCURRENCY at a
    time (never more than the source allows), then score the job if none is left. True while recipes
    remain. Raises EvaluationJobBusy while another copy holds the job."""
    if not _lease_take(job_id):
        job = EvaluationJob.objects.get(pk=job_id)
        if job.status in (EvaluationJobStatus.SUCCEEDED, EvaluationJobStatus.FAILED):
            return False
        raise EvaluationJobBusy(
            f"Evaluation job {job_id} is being worked on until {job.lease_until:%H:%M:%S}",
            details={"job": job_id},
        )
    job = EvaluationJob.objects.get(pk=job_id)
    try:
        more = _step(job, progress)
    except Exception as exc:
        message = exc.message if isinstance(exc, DomainError) else f"Unexpected error: {exc}"
        if not isinstance(exc, DomainError):
            logger.exception("Evaluation job %s failed", job_id)
        EvaluationJob.objects.filter(pk=job_id).update(
            status=EvaluationJobStatus.FAILED, error=message, finished_at=timezone.now(), lease_until=None
        )
        raise
    EvaluationJob.objects.filter(pk=job_id).update(lease_until=None)
    return more


def _positions_pending(*, job: EvaluationJob, limit: int) -> list[int]:
    """The first `limit` dataset positions the job has no answer for, found by the database: a step of a
    100,000-recipe job does not read the positions already answered."""
    table = EvaluationItem._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT wanted.n FROM generate_series(0, %s - 1) AS wanted(n)
            WHERE NOT EXISTS (SELECT 1 FROM {table} item WHERE item.job_id = %s AND item.position = wanted.n)
            ORDER BY wanted.n LIMIT %s
            """,
            [job.total, job.pk, limit],
        )
        return [row[0] for row in cursor.fetchall()]


def _step(job: EvaluationJob, progress: Progress | None) -> bool:
    done = EvaluationItem.objects.filter(job=job).count()
    pending = _positions_pending(job=job, limit=int(settings.EVALUATION_CHUNK_SIZE))
    if pending:
        # Only the chunk's recipes are read: a step costs its chunk, whatever the size of the dataset.
        chunk = dataset_recipes_at(lines=bytes(job.dataset_content).splitlines(keepends=True), positions=pending)
        config = TaggingConfig(strategy=job.strategy, k=job.k, categories=tuple(job.categories), source=job.source)
        try:
            requests = category_requests(config=config)
            source = llm_source_resolve(config=config)
        except TaggingError as exc:
            raise EvaluationError(f"The evaluation can no longer run: {exc.message}") from exc
        prompt = job_prompt(job=job)
        recipes = [chunk[i] for i in pending]
        embeddings = embeddings_cached(texts=[r.text.for_embedding() for r in recipes])
        keys = [
            llm_cache_key(
                content_hash=recipe_content_hash(
                    title=r.text.title, ingredients=r.text.ingredients, instructions=r.text.instructions
                ),
                config=config,
                requests=requests,
                source=source,
                prompt=prompt,
            )
            for r in recipes
        ]
        earlier = {
            item.cache_key: item for item in EvaluationItem.objects.filter(cache_key__in=keys, ok=True).order_by("id")
        }
        to_ask = []
        for position, recipe, embedding, key in zip(pending, recipes, embeddings, keys, strict=True):
            if key in earlier:
                hit = earlier[key]
                predicted = {slug: [(t, s) for t, s in tags] for slug, tags in hit.predicted.items()}
                answer = _Answer(position, recipe, key, predicted, hit.stats, 0.0)
                _store(job, answer, cached=True)
            else:
                to_ask.append((position, recipe, embedding, key))
        _ask_all(job, to_ask, config, requests, source, prompt, progress, already=done + len(pending) - len(to_ask))
        done = EvaluationItem.objects.filter(job=job).count()
    if progress is not None:
        progress(done, job.total)
    if done < job.total:
        return True
    _finish(job, _dataset(job))
    return False


def _ask_all(
    job: EvaluationJob,
    to_ask: list[tuple[int, DatasetRecipe, np.ndarray, str]],
    config: TaggingConfig,
    requests: Sequence[CategoryRequest],
    source: LLMSourceConfig,
    prompt: PromptTemplates,
    progress: Progress | None,
    *,
    already: int,
) -> None:
    workers = max(1, min(int(settings.EVALUATION_LLM_CONCURRENCY), source.max_concurrency, len(to_ask)))
    answered = already
    if workers == 1:
        for position, recipe, embedding, key in to_ask:
            predicted, stats, latency, error = _ask(recipe, embedding, config, requests, source, prompt)
            _store(job, _Answer(position, recipe, key, predicted, stats, latency, error), cached=False)
            answered += 1
            if progress is not None:
                progress(answered, job.total)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="evaluation") as pool:
        futures = {
            pool.submit(_ask_in_thread, recipe, embedding, config, requests, source, prompt): (position, recipe, key)
            for position, recipe, embedding, key in to_ask
        }
        for future in as_completed(futures):
            position, recipe, key = futures[future]
            predicted, stats, latency, error = future.result()
            _store(job, _Answer(position, recipe, key, predicted, stats, latency, error), cached=False)
            answered += 1
            if progress is not None:
                progress(answered, job.total)
    close_old_connections()


def evaluation_job_run_here(*, job_id: int, progress: Progress | None = None) -> EvaluationJob:
    """Do the whole job in this process, chunk after chunk (what the worker does, for a command line or a
    benchmark without a worker)."""
    while evaluation_job_step(job_id=job_id, progress=progress):
        pass
    return EvaluationJob.objects.select_related("run").get(pk=job_id)


def _finish(job: EvaluationJob, dataset: Dataset) -> None:
    items = list(EvaluationItem.objects.filter(job=job).order_by("position"))
    slugs, tags_by_name = runner.database_categories(test=dataset, categories=job.categories)
    returned = [{slug: [(t, float(s)) for t, s in tags] for slug, tags in item.predicted.items()} for item in items]
    embeddings = embeddings_cached(texts=[r.text.for_embedding() for r in dataset.recipes])
    result = runner.evaluate_returned(
        test=dataset,
        k=job.k,
        slugs=slugs,
        tags_by_name=tags_by_name,
        embeddings=embeddings,
        returned=returned,
        latencies=[item.latency_ms for item in items if not item.cached and item.ok],
        labelled=labelled_data(),
        strategy=job.strategy,
    )
    gold = runner.database_gold(dataset, tags_by_name)
    taxonomy = {slug: set(tags_by_name.get(slug, {}).values()) for slug in slugs}
    result.extra["llm"] = llm_report(items=items, source=job.source)
    scores, truth = stated_pairs(
        stated=[item.stats.get("stated_confidence", {}) if item.ok else {} for item in items], gold=gold
    )
    # Fitted on the confidences as stated: a calibration already in use does not feed back into the next.
    result.extra["llm"]["confidence"] = confidence_calibration_fit(scores=scores, truth=truth)
    if job.strategy == Strategy.HYBRID:
        result.extra["hybrid"] = hybrid_report(items=items, gold=gold, slugs=slugs, taxonomy=taxonomy, k=job.k)
    with transaction.atomic():
        run = EvaluationRun.objects.create(
            dataset=result.dataset,
            dataset_sha256=result.dataset_sha256,
            strategy=job.strategy,
            config={
                "k": job.k,
                "folds": None,
                "train": "database",
                "categories": result.categories,
                "source": job.source,
                "job": job.pk,
            },
            prompt_version=job_prompt(job=job).label,
            code_version=code_version(),
            metrics=result.as_json(),
            recipes=result.recipes,
            overall_f1=result.report.overall_f1,
            duration_seconds=(timezone.now() - (job.started_at or job.created_at)).total_seconds(),
            created_by=job.created_by,
        )
        EvaluationJob.objects.filter(pk=job.pk).update(
            status=EvaluationJobStatus.SUCCEEDED, run=run, finished_at=timezone.now()
        )


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p95": 0.0}
    return {
        "p50": round(float(np.percentile(values, 50)), 2),
        "p95": round(float(np.percentile(values, 95)), 2),
    }


def llm_report(*, items: Sequence[EvaluationItem], source: str) -> dict[str, Any]:
    """Tokens, cost and latency per recipe, cache hits and failures of an evaluation job's answers. An
    answer reused from an earlier job counts what it cost then: the figures describe the strategy, not this
    job's bill (which `cache_hits` tells apart)."""
    answered = [item for item in items if item.ok]
    called = [item for item in answered if not item.cached]
    totals = {
        key: sum(int(item.stats.get(stat, 0) or 0) for item in answered)
        for key, stat in (("prompt", "input_tokens"), ("completion", "output_tokens"), ("cached", "cached_tokens"))
    }
    cost = sum(float(item.stats.get("cost", 0.0) or 0.0) for item in answered)
    count = len(answered) or 1
    failures = [item for item in items if not item.ok]
    return {
        "source": source,
        "recipes": len(items),
        "answered": len(answered),
        "cache_hits": len(answered) - len(called),
        "failures": len(failures),
        "failure_examples": [f"{item.recipe_id}: {item.error[:300]}" for item in failures[:FAILURE_EXAMPLES]],
        "tokens": totals,
        "tokens_per_recipe": {key: round(value / count, 1) for key, value in totals.items()},
        "cost": round(cost, 6),
        "cost_per_recipe": round(cost / count, 6),
        "calls_per_recipe": round(sum(int(i.stats.get("llm_calls", 0) or 0) for i in answered) / count, 3),
        "latency_ms": _percentiles([item.latency_ms for item in called]),
        "unknown_dropped": sum(int(item.stats.get("unknown_dropped", 0) or 0) for item in answered),
        "over_k_dropped": sum(int(item.stats.get("over_k_dropped", 0) or 0) for item in answered),
    }


def hybrid_report(
    *,
    items: Sequence[EvaluationItem],
    gold: Sequence[dict[str, set[str]]],
    slugs: Sequence[str],
    taxonomy: dict[str, set[str]],
    k: int,
) -> dict[str, Any]:
    """The shortlist's recall (of the gold tags the taxonomy has, the share similarity accepted or offered
    the model) per category and overall, and what the similarity tagger would have returned alone, scored
    the same way. Gold tags outside the taxonomy can reach no strategy and are left out of the recall."""
    reached = dict.fromkeys(slugs, 0)
    reachable = dict.fromkeys(slugs, 0)
    alone: list[dict[str, set[str]]] = []
    by_position = {item.position: item for item in items}
    for position, labels in enumerate(gold):
        item = by_position.get(position)
        stats = item.stats if item is not None and item.ok else {}
        accepted, shortlist = stats.get("accepted", {}), stats.get("shortlist", {})
        for slug in slugs:
            wanted = labels.get(slug, set()) & taxonomy.get(slug, set())
            seen = set(accepted.get(slug, ())) | set(shortlist.get(slug, ()))
            reachable[slug] += len(wanted)
            reached[slug] += len(wanted & seen)
        alone.append({slug: set(tags) for slug, tags in stats.get("similarity_alone", {}).items()})
    report = metrics.score(gold=list(gold), predicted=alone, categories=list(slugs), k=k, taxonomy=taxonomy)
    answered = [item for item in items if item.ok]
    return {
        "shortlist_recall": round(sum(reached.values()) / sum(reachable.values()), 4)
        if any(reachable.values())
        else None,
        "shortlist_recall_by_category": {
            slug: round(reached[slug] / reachable[slug], 4) if reachable[slug] else None for slug in slugs
        },
        "gold_tags_in_taxonomy": sum(reachable.values()),
        "shortlisted_per_recipe": round(
            sum(int(i.stats.get("shortlisted", 0) or 0) for i in answered) / (len(answered) or 1), 2
        ),
        "decided_by_similarity": sum(int(i.stats.get("decided_by_similarity", 0) or 0) for i in answered),
        "decided_by_llm": sum(int(i.stats.get("decided_by_llm", 0) or 0) for i in answered),
        "similarity_alone": {
            "overall": {
                "precision": round(report.overall_precision, 4),
                "recall": round(report.overall_recall, 4),
                "f1": round(report.overall_f1, 4),
            },
            "categories": {
                slug: {
                    key: value
                    for key, value in report.categories[slug].as_dict().items()
                    if key in ("precision", "recall", "f1")
                }
                for slug in slugs
            },
        },
    }
