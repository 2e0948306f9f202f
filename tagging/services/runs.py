"""Tagging runs: tag a recipe now (similarity), execute a queued run on the worker (every strategy), tag many
recipes in one pass, and predict without storing (for evaluation)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from autotagger.bulk_updates import rows_insert
from autotagger.collector import collection_paused
from autotagger.embeddings import EmbeddingError, EmbeddingMode, embedding_model_name
from autotagger.recipe_text import RecipeText
from tagging.models import Recipe, RunStatus, TagAssignment, TaggingRun
from tagging.selectors import tagger_state_in_use_id
from tagging.services.config import (
    TaggingConfig,
    TaggingError,
    category_requests,
    config_stored,
    user_or_none,
)
from tagging.services.current_runs import recipes_current_run_set, run_current_advance
from tagging.services.llm_runs import run_tag_with_llm
from tagging.services.recipes import (
    EmbeddingUnavailable,
    recipe_embed_for_tagging,
    recipes_embed,
    recipes_embed_fast,
    tags_ensure_embedded,
)
from tagging.services.rules import output_apply_rules, requests_widened, rules_of_requests
from tagging.services.tagger_state import learned_model_active
from tagging.taggers.base import CategoryRequest, TaggerOutput
from tagging.taggers.llm import QuestionDeferred
from tagging.taggers.similarity import SimilarityTagger
from taxonomy.models import Tag
from taxonomy.selectors import taxonomy_version_current

logger = logging.getLogger(__name__)


def _assignments(run: TaggingRun, output: TaggerOutput) -> list[TagAssignment]:
    return [
        TagAssignment(run=run, tag_id=scored.tag_id, score=scored.score, rank=rank, evidence=scored.evidence)
        for tags in output.tags.values()
        for rank, scored in enumerate(tags, start=1)
    ]


def _tag(recipe: Recipe, requests: Sequence[CategoryRequest], mode: str = EmbeddingMode.FULL) -> TaggerOutput:
    """Score `recipe` (its embedding is computed if needed, but not saved), every tag above the threshold:
    `output_apply_rules` cuts to k. Raises EmbeddingUnavailable."""
    started = time.perf_counter()
    if mode == EmbeddingMode.FAST:
        vectors, embed_seconds = recipes_embed_fast(recipes=[recipe], requests=requests)
        embedding = vectors[0]
    else:
        embed_seconds = recipe_embed_for_tagging(recipe=recipe, requests=requests)
        embedding = np.asarray(recipe.embedding)
    output = SimilarityTagger(model=embedding_model_name(mode=mode), learned=learned_model_active(mode=mode)).tag(
        recipe=recipe.text, embedding=embedding, requests=requests_widened(requests=requests)
    )
    output.timings_ms["embed_ms"] = round(embed_seconds * 1000, 2)
    output.timings_ms["total_ms"] = round((time.perf_counter() - started) * 1000, 2)
    return output


def run_inputs_record(*, run: TaggingRun, recipe: Recipe) -> None:
    """Set on `run` (not saved) what every strategy reads, as it is now, so that a recipe whose current run read
    something that has changed since is found stale (tagging.selectors.recipes_stale). The LLM's prompt version,
    source and model are set where it is asked (llm_runs.run_tag_with_llm). The tagger state is recorded for
    every strategy: llm picks its few-shot examples with it too."""
    run.taxonomy_version = taxonomy_version_current()
    run.content_hash = recipe.content_hash
    run.tagger_state_id = tagger_state_in_use_id(mode=(run.config or {}).get("embedding") or EmbeddingMode.FULL)


def _run_store_success(run: TaggingRun, output: TaggerOutput) -> None:
    """Within the caller's transaction: the recipe's vector, the run's outcome and its assignments, and the
    recipe's current tags moved to the run (unless it is a dry run)."""
    recipe = run.recipe
    if recipe.pk is None:
        recipe.save()
    else:
        Recipe.objects.filter(pk=recipe.pk).update(embedding=recipe.embedding, embedding_model=recipe.embedding_model)
    run.recipe = recipe
    run.status = RunStatus.SUCCEEDED
    fast = run.config.get("embedding") == EmbeddingMode.FAST
    run.embedding_model = embedding_model_name(mode=EmbeddingMode.FAST) if fast else recipe.embedding_model
    run.finished_at = timezone.now()
    run.timings = output.timings_ms
    run.stats = _stats_with_margin(run.stats, output)
    run.save()
    TagAssignment.objects.bulk_create(_assignments(run, output))
    run_current_advance(run=run)


def _stats_with_margin(stats: dict[str, Any] | None, output: TaggerOutput) -> dict[str, Any]:
    # What the review queue sorts by, least sure first: the margin the learning curve replays.
    if output.uncertainty_margin is None:
        return stats or {}
    return {**(stats or {}), "uncertainty_margin": output.uncertainty_margin}


def run_create(
    *,
    recipe: Recipe,
    config: TaggingConfig,
    user: AbstractBaseUser | AnonymousUser | None = None,
    sets_current: bool = True,
) -> TaggingRun:
    """A queued run for the worker; raises TaggingError (and stores nothing) if `config` cannot be served.
    Unless `sets_current` is False (a dry run), its success makes it the recipe's current tags."""
    requests = category_requests(config=config)
    return TaggingRun.objects.create(
        recipe=recipe,
        strategy=config.strategy,
        config=config_stored(config=config, requests=requests),
        embedding_model=embedding_model_name(mode=config.embedding),
        status=RunStatus.QUEUED,
        lease_expires_at=timezone.now() + run_queued_lease(),
        created_by=user_or_none(user=user),
        sets_current=sets_current,
    )


# The run task's time limits (tagging.tasks), and how long a started run belongs to the task copy that
# started it: its hard limit, past which that copy cannot still be working. An LLM call is bounded to fit
# inside the soft limit (prompts.gateway.llm_call_budget_seconds; tagging.checks refuses to start otherwise).
RUN_SOFT_TIME_LIMIT = int(settings.TAGGING_RUN_SOFT_TIME_LIMIT_SECONDS)
RUN_TIME_LIMIT = RUN_SOFT_TIME_LIMIT + 60
RUN_CLAIM = timedelta(seconds=RUN_TIME_LIMIT)

# Error codes of runs that ended without a tagger's verdict.
RUN_ABANDONED = "run_abandoned"
BROKER_UNAVAILABLE = "broker_unavailable"


def run_queued_lease() -> timedelta:
    """How long a queued run may wait for a worker before the sweep takes it for lost."""
    return timedelta(seconds=settings.TAGGING_RUN_STALE_SECONDS)


def run_abandon(*, run: TaggingRun) -> None:
    """Within the caller's transaction (the run locked): fail a run that was delivered too often."""
    run.status, run.error_code, run.finished_at = RunStatus.FAILED, RUN_ABANDONED, timezone.now()
    run.error = (
        f"The run was delivered {run.attempts} times without finishing (its worker or its message was lost "
        "each time); it is not tried again."
    )
    run.save(update_fields=["status", "error", "error_code", "finished_at", "attempts"])


def run_execute(*, run_id: int, delivery: str | None = None) -> TaggingRun:
    """Execute a queued run and store its assignments, all or nothing, exactly once.

    `delivery` names the task message (Celery task id) executing the run. The run is claimed for it, with a
    lease of the task's hard time limit: a copy from another delivery leaves a run claimed by a live one
    alone, and a finished run is never run again, so duplicate messages are harmless. The same delivery
    arriving again means the worker that held it was lost (the broker only re-delivers a message whose
    worker died), so it takes the run over at once. After TAGGING_RUN_MAX_ATTEMPTS claims the run is failed
    (`run_abandoned`) instead of killing yet another worker. A failure is recorded on the run (status
    `failed`, `error`) and re-raised as a TaggingError.
    """
    token = delivery or uuid.uuid4().hex
    with transaction.atomic():
        run = TaggingRun.objects.select_for_update().select_related("recipe").get(pk=run_id)
        if run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED):
            return run
        now = timezone.now()
        held = run.lease_expires_at is not None and run.lease_expires_at > now
        if run.status == RunStatus.RUNNING and held and run.claimed_by != token:
            # Another copy of the task holds the run (a duplicate message while it works): asking the
            # model twice would pay twice. A copy that died is taken over once its lease has expired.
            return run
        if run.attempts >= settings.TAGGING_RUN_MAX_ATTEMPTS:
            run_abandon(run=run)
            return run
        run.status, run.started_at, run.claimed_by = RunStatus.RUNNING, now, token
        run.lease_expires_at, run.attempts = now + RUN_CLAIM, run.attempts + 1
        run.save(update_fields=["status", "started_at", "claimed_by", "lease_expires_at", "attempts"])
    config = TaggingConfig.from_dict(run.config)
    ours = TaggingRun.objects.filter(pk=run_id, status=RunStatus.RUNNING, claimed_by=token)

    def tag(requests: Sequence[CategoryRequest]) -> tuple[TaggerOutput, dict[str, Any]]:
        if config.uses_llm:
            return run_tag_with_llm(run, config, requests)
        return _tag(run.recipe, requests, config.embedding), {}

    return run_complete(run=run, config=config, ours=ours, tag=tag)


def run_complete(
    *,
    run: TaggingRun,
    config: TaggingConfig,
    ours: QuerySet[TaggingRun],
    tag: Callable[[Sequence[CategoryRequest]], tuple[TaggerOutput, dict[str, Any]]],
    record_inputs: bool = True,
) -> TaggingRun:
    """Tag `run` with `tag` (the strategy's work, given the categories to tag), apply the ingredient rules and
    store the success, or record the failure and re-raise it; either only while `ours` (the run, as its
    holder sees it) still finds the run. What `run_execute` does once it holds a run, and what a Batch API
    batch does when its answer arrives (tagging.services.batches: `record_inputs` False, the run keeps the
    inputs recorded when its question was asked)."""
    try:
        if record_inputs:
            run_inputs_record(run=run, recipe=run.recipe)
        requests = category_requests(config=config)
        output, stats = tag(requests)
        run.removed_by_rule = output_apply_rules(recipe=run.recipe.text, output=output, requests=requests)
    except QuestionDeferred:
        # Not a failure: the question goes into a batch, and the run waits for its answer as it is.
        raise
    except Exception as exc:
        # Whatever went wrong, a polling client must see the run end rather than stay "running".
        message = exc.message if isinstance(exc, TaggingError) else f"Unexpected error: {exc}"
        code = exc.code if isinstance(exc, TaggingError) else "internal_error"
        if not isinstance(exc, TaggingError):
            logger.exception("Unable to execute tagging run %s", run.pk)
        run.status, run.error, run.error_code, run.finished_at = RunStatus.FAILED, message, code, timezone.now()
        # Only while still ours: a copy that finished or took over meanwhile keeps its outcome.
        ours.update(status=run.status, error=run.error, error_code=run.error_code, finished_at=run.finished_at)
        raise
    # The categories tagged now, which may differ from those active when the run was queued.
    run.config = config_stored(config=config, requests=requests)
    run.stats = stats
    with transaction.atomic():
        # Lock again: a copy of this task may have taken the run over (our worker was thought lost).
        if ours.select_for_update().exists():
            _run_store_success(run, output)
    return run


def _runs_stale(*, now: datetime, include_queued: bool) -> QuerySet[TaggingRun]:
    stale_queued = now - run_queued_lease()
    lost = Q(lease_expires_at__lt=now) | Q(lease_expires_at__isnull=True, created_at__lt=stale_queued)
    statuses = [RunStatus.QUEUED, RunStatus.RUNNING] if include_queued else [RunStatus.RUNNING]
    return TaggingRun.objects.filter(lost, status__in=statuses)


@dataclass(frozen=True)
class RunsSwept:
    requeued: list[int]
    failed: list[int]


def runs_requeue_stale(
    *, enqueue: Callable[[Sequence[int]], object], include_queued: bool, limit: int = 1000
) -> RunsSwept:
    """Take back runs whose lease has expired: a worker died holding them (`running`), or their message was
    lost (`queued`; only when `include_queued`, i.e. nothing waits in the queue, since a long queue keeps runs
    waiting past their lease). Each goes back to the queue through `enqueue` (run ids, after commit), or is
    failed (`run_abandoned`) once it has had TAGGING_RUN_MAX_ATTEMPTS deliveries. A lost queued run counts
    as a delivery; a lost running one was counted when a worker claimed it."""
    now = timezone.now()
    requeued: list[int] = []
    failed: list[int] = []
    with transaction.atomic():
        runs = list(
            _runs_stale(now=now, include_queued=include_queued)
            .select_for_update(skip_locked=True)
            .order_by("id")[:limit]
        )
        for run in runs:
            if run.status == RunStatus.QUEUED:
                run.attempts += 1
            if run.attempts >= settings.TAGGING_RUN_MAX_ATTEMPTS:
                run_abandon(run=run)
                failed.append(run.pk)
                continue
            run.status, run.claimed_by, run.lease_expires_at = RunStatus.QUEUED, "", now + run_queued_lease()
            run.save(update_fields=["status", "claimed_by", "lease_expires_at", "attempts"])
            requeued.append(run.pk)
    if failed or requeued:
        logger.warning("Stale tagging runs: re-queued %s, failed %s", requeued, failed)
    if requeued:
        # After commit: if the broker refuses them now, their new lease expires and the next sweep retries.
        enqueue(requeued)
    return RunsSwept(requeued=requeued, failed=failed)


def job_runs_dispatch(*, job_id: int, enqueue: Callable[[Sequence[int]], object], chunk_size: int) -> int:
    """Hand a job's runs that were never queued to the broker, `chunk_size` at a time; returns how many.

    Each chunk gets its queued lease before it is sent, so a chunk the broker refuses (the error propagates)
    is taken back by the sweep."""
    sent = 0
    while True:
        with transaction.atomic():
            ids = list(
                TaggingRun.objects.select_for_update(skip_locked=True)
                .filter(job_id=job_id, status=RunStatus.QUEUED, lease_expires_at__isnull=True)
                .order_by("id")
                .values_list("id", flat=True)[:chunk_size]
            )
            TaggingRun.objects.filter(pk__in=ids).update(lease_expires_at=timezone.now() + run_queued_lease())
        if not ids:
            return sent
        enqueue(ids)
        sent += len(ids)


def recipe_tag(
    *,
    recipe: Recipe,
    config: TaggingConfig,
    user: AbstractBaseUser | AnonymousUser | None = None,
    sets_current: bool = True,
) -> TaggingRun:
    """Tag `recipe` now and return the finished run (the recipe's current tags, unless `sets_current` is False).

    A recipe not yet saved is saved with the run, in one transaction. If the embedding model fails,
    the failure is stored as a failed run (of a saved recipe) and EmbeddingUnavailable is raised.
    """
    requests = category_requests(config=config)
    run = TaggingRun(
        recipe=recipe,
        strategy=config.strategy,
        config=config_stored(config=config, requests=requests),
        created_by=user_or_none(user=user),
        started_at=timezone.now(),
        sets_current=sets_current,
    )
    run_inputs_record(run=run, recipe=recipe)
    try:
        output = _tag(recipe, requests, config.embedding)
        run.removed_by_rule = output_apply_rules(recipe=recipe.text, output=output, requests=requests)
    except EmbeddingUnavailable as exc:
        with transaction.atomic():
            if recipe.pk is None:
                recipe.save()
            run.recipe = recipe
            run.status, run.error, run.error_code, run.finished_at = (
                RunStatus.FAILED,
                exc.message,
                exc.code,
                timezone.now(),
            )
            run.save()
        raise
    with transaction.atomic():
        _run_store_success(run, output)
    return run


def recipes_tag_bulk(
    *,
    recipes: Sequence[Recipe],
    config: TaggingConfig,
    sets_current: bool = True,
    on_stored: Callable[[list[TaggingRun]], None] | None = None,
) -> list[TaggingRun]:
    """Tag many recipes in one pass: one batched embedding call (past the in-process embedding cache: a bulk
    pass's texts are seen once), the recipes scored together (SimilarityTagger.tag_many), and all runs and
    assignments written together (COPY).

    Each run becomes its recipe's current tags unless `sets_current` is False (a dry run).
    `on_stored` is called with the runs inside the transaction that stores them, so that a caller's own
    bookkeeping (a re-tagging job's items) is committed with them or not at all."""
    with collection_paused():
        return _recipes_tag_bulk(recipes=recipes, config=config, sets_current=sets_current, on_stored=on_stored)


def _recipes_tag_bulk(
    *,
    recipes: Sequence[Recipe],
    config: TaggingConfig,
    sets_current: bool,
    on_stored: Callable[[list[TaggingRun]], None] | None,
) -> list[TaggingRun]:
    requests = category_requests(config=config)
    mode = config.embedding
    model = embedding_model_name(mode=mode)
    started = time.perf_counter()
    if mode == EmbeddingMode.FAST:
        embeddings, _ = recipes_embed_fast(recipes=recipes, requests=requests, cache=settings.EMBEDDING_CACHE_BULK)
    else:
        tags_ensure_embedded(requests=requests, model=model)
        try:
            recipes_embed(recipes=recipes, cache=settings.EMBEDDING_CACHE_BULK)
        except EmbeddingError as exc:
            raise EmbeddingUnavailable(f"The embedding model is unavailable: {exc}") from exc
        embeddings = np.stack([np.asarray(r.embedding, dtype=np.float32) for r in recipes])
    tagger = SimilarityTagger(model=model, learned=learned_model_active(mode=mode))
    taxonomy_version, tagger_state_id = taxonomy_version_current(), tagger_state_in_use_id(mode=mode)
    now = timezone.now()
    stored_config = config_stored(config=config, requests=requests)
    rules = rules_of_requests(requests=requests)
    widened = requests_widened(requests=requests, rules=rules)
    outputs = tagger.tag_many(
        recipes=[recipe.text for recipe in recipes], embeddings=_embedding_matrix(embeddings), requests=widened
    )
    removed = [
        output_apply_rules(recipe=recipe.text, output=output, requests=requests, rules=rules)
        for recipe, output in zip(recipes, outputs, strict=True)
    ]
    runs = [
        TaggingRun(
            recipe=recipe,
            strategy=config.strategy,
            config=stored_config,
            embedding_model=model,
            status=RunStatus.SUCCEEDED,
            started_at=now,
            finished_at=now,
            removed_by_rule=removed_by_rule,
            stats=_stats_with_margin({}, output),
            taxonomy_version=taxonomy_version,
            content_hash=recipe.content_hash,
            tagger_state_id=tagger_state_id,
            sets_current=sets_current,
        )
        for recipe, removed_by_rule, output in zip(recipes, removed, outputs, strict=True)
    ]
    with transaction.atomic():
        _runs_insert(runs)
        rows_insert(
            model=TagAssignment,
            fields=["run", "tag", "score", "rank", "evidence"],
            rows=[
                (run.pk, scored.tag_id, scored.score, rank, scored.evidence)
                for run, output in zip(runs, outputs, strict=True)
                for tags in output.tags.values()
                for rank, scored in enumerate(tags, start=1)
            ],
        )
        if on_stored is not None:
            on_stored(runs)
        if sets_current:
            recipes_current_run_set(runs=runs, only_newer=True)
    logger.info("Tagged %d recipes in %.2fs", len(recipes), time.perf_counter() - started)
    return runs


def _runs_insert(runs: Sequence[TaggingRun]) -> None:
    """Insert new runs as `save()` would (each field's `pre_save`: `created_at` is set), in one COPY, and give
    them their primary keys."""
    fields = [f for f in TaggingRun._meta.concrete_fields if not f.primary_key]
    ids = rows_insert(
        model=TaggingRun,
        fields=[f.name for f in fields],
        rows=[tuple(f.pre_save(run, add=True) for f in fields) for run in runs],
        with_ids=True,
    )
    for run, pk in zip(runs, ids, strict=True):
        run.pk = pk
        run._state.adding, run._state.db = False, DEFAULT_DB_ALIAS


def recipes_predict(
    *,
    texts: Sequence[RecipeText],
    embeddings: np.ndarray,
    category_slugs: Sequence[str],
    k: int,
    mode: str = EmbeddingMode.FULL,
) -> list[dict[str, list[tuple[str, float]]]]:
    """What the similarity tagger would return for each recipe (category slug -> [(tag slug, score)]),
    ingredient rules applied, with nothing stored: for evaluating the tagger as deployed. `embeddings` are
    the mode's model's."""
    requests = category_requests(config=TaggingConfig(k=k, categories=tuple(category_slugs), embedding=mode))
    model = embedding_model_name(mode=mode)
    tags_ensure_embedded(requests=requests, model=model)
    tagger = SimilarityTagger(model=model, learned=learned_model_active(mode=mode))
    slugs = {r.category.pk: r.category.slug for r in requests}
    rules = rules_of_requests(requests=requests)
    widened = requests_widened(requests=requests, rules=rules)
    results = []
    outputs = tagger.tag_many(recipes=texts, embeddings=_embedding_matrix(embeddings), requests=widened)
    for text, output in zip(texts, outputs, strict=True):
        output_apply_rules(recipe=text, output=output, requests=requests, rules=rules)
        results.append({slugs[pk]: [(t.slug, t.score) for t in tags] for pk, tags in output.tags.items()})
    return results


def _embedding_matrix(embeddings: Sequence[Any] | np.ndarray) -> np.ndarray:
    if len(embeddings) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([np.asarray(e, dtype=np.float32) for e in embeddings])


def tag_assignments_move(source: Tag, target: Tag) -> None:
    """A merge of `source` into `target` (taxonomy.services.changes): runs that had `source` have `target`;
    where a run already had both, it keeps the higher score once."""
    runs_with_target = TagAssignment.objects.filter(tag=target).values("run_id")
    for duplicate in TagAssignment.objects.filter(tag=source, run_id__in=runs_with_target):
        TagAssignment.objects.filter(tag=target, run_id=duplicate.run_id, score__lt=duplicate.score).update(
            score=duplicate.score
        )
        duplicate.delete()
    TagAssignment.objects.filter(tag=source).update(tag=target)
