"""Tagging runs: tag a recipe now (similarity), execute a queued run on the worker (every strategy), tag many
recipes in one pass, and predict without storing (for evaluation)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.utils import timezone

from autotagger.embeddings import EmbeddingError, embedding_model_name
from autotagger.recipe_text import RecipeText
from tagging.models import Recipe, RunStatus, TagAssignment, TaggingRun
from tagging.services.config import (
    TaggingConfig,
    TaggingError,
    category_requests,
    config_stored,
    user_or_none,
)
from tagging.services.llm_runs import run_tag_with_llm
from tagging.services.recipes import EmbeddingUnavailable, recipe_embed_for_tagging, recipes_embed, tags_ensure_embedded
from tagging.services.rules import output_apply_rules, requests_widened, rules_of_requests
from tagging.services.tagger_state import learned_model_active
from tagging.taggers.base import CategoryRequest, TaggerOutput
from tagging.taggers.similarity import SimilarityTagger
from taxonomy.models import Tag

logger = logging.getLogger(__name__)


def _assignments(run: TaggingRun, output: TaggerOutput) -> list[TagAssignment]:
    return [
        TagAssignment(run=run, tag_id=scored.tag_id, score=scored.score, rank=rank, evidence=scored.evidence)
        for tags in output.tags.values()
        for rank, scored in enumerate(tags, start=1)
    ]


def _tag(recipe: Recipe, requests: Sequence[CategoryRequest]) -> TaggerOutput:
    """Score `recipe` (its embedding is computed if needed, but not saved), every tag above the threshold:
    `output_apply_rules` cuts to k. Raises EmbeddingUnavailable."""
    started = time.perf_counter()
    embed_seconds = recipe_embed_for_tagging(recipe=recipe, requests=requests)
    output = SimilarityTagger(model=embedding_model_name(), learned=learned_model_active()).tag(
        recipe=recipe.text, embedding=np.asarray(recipe.embedding), requests=requests_widened(requests=requests)
    )
    output.timings_ms["embed_ms"] = round(embed_seconds * 1000, 2)
    output.timings_ms["total_ms"] = round((time.perf_counter() - started) * 1000, 2)
    return output


def _run_store_success(run: TaggingRun, output: TaggerOutput) -> None:
    """Within the caller's transaction: the recipe's vector, the run's outcome and its assignments."""
    recipe = run.recipe
    if recipe.pk is None:
        recipe.save()
    else:
        Recipe.objects.filter(pk=recipe.pk).update(embedding=recipe.embedding, embedding_model=recipe.embedding_model)
    run.recipe = recipe
    run.status = RunStatus.SUCCEEDED
    run.embedding_model = recipe.embedding_model
    run.finished_at = timezone.now()
    run.timings = output.timings_ms
    run.save()
    TagAssignment.objects.bulk_create(_assignments(run, output))


def run_create(
    *, recipe: Recipe, config: TaggingConfig, user: AbstractBaseUser | AnonymousUser | None = None
) -> TaggingRun:
    """A queued run for the worker; raises TaggingError (and stores nothing) if `config` cannot be served."""
    requests = category_requests(config=config)
    return TaggingRun.objects.create(
        recipe=recipe,
        strategy=config.strategy,
        config=config_stored(config=config, requests=requests),
        embedding_model=embedding_model_name(),
        status=RunStatus.QUEUED,
        created_by=user_or_none(user=user),
    )


# The run task's time limits (tagging.tasks), and how long a started run belongs to the task copy that
# started it: its hard limit, past which that copy cannot still be working. An LLM call is bounded to fit
# inside the soft limit (prompts.gateway.llm_call_budget_seconds; tagging.checks refuses to start otherwise).
RUN_SOFT_TIME_LIMIT = int(settings.TAGGING_RUN_SOFT_TIME_LIMIT_SECONDS)
RUN_TIME_LIMIT = RUN_SOFT_TIME_LIMIT + 60
RUN_CLAIM = timedelta(seconds=RUN_TIME_LIMIT)


def run_execute(*, run_id: int) -> TaggingRun:
    """Execute a queued run and store its assignments, all or nothing.

    Running a finished run again changes nothing, so a re-delivered task is harmless. A failure is
    recorded on the run (status `failed`, `error`) and re-raised as a TaggingError.
    """
    with transaction.atomic():
        run = TaggingRun.objects.select_for_update().select_related("recipe").get(pk=run_id)
        if run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED):
            return run
        if run.status == RunStatus.RUNNING and run.started_at and run.started_at > timezone.now() - RUN_CLAIM:
            # Another copy of the task holds the run (a re-delivery while it works): asking the model
            # twice would pay twice. A copy that died is taken over once its claim has expired.
            return run
        run.status = RunStatus.RUNNING
        run.started_at = timezone.now()
        run.save(update_fields=["status", "started_at"])
    config = TaggingConfig.from_dict(run.config)
    try:
        requests = category_requests(config=config)
        if config.uses_llm:
            output, stats = run_tag_with_llm(run, config, requests)
        else:
            output, stats = _tag(run.recipe, requests), {}
        run.removed_by_rule = output_apply_rules(recipe=run.recipe.text, output=output, requests=requests)
    except Exception as exc:
        # Whatever went wrong, a polling client must see the run end rather than stay "running".
        message = exc.message if isinstance(exc, TaggingError) else f"Unexpected error: {exc}"
        if not isinstance(exc, TaggingError):
            logger.exception("Unable to execute tagging run %s", run_id)
        run.status, run.error, run.finished_at = RunStatus.FAILED, message, timezone.now()
        # Only while still ours: a copy that finished meanwhile keeps its outcome.
        TaggingRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(
            status=run.status, error=run.error, finished_at=run.finished_at
        )
        raise
    # The categories tagged now, which may differ from those active when the run was queued.
    run.config = config_stored(config=config, requests=requests)
    run.stats = stats
    with transaction.atomic():
        # Lock again: a re-delivered copy of this task may have finished the run meanwhile.
        if TaggingRun.objects.select_for_update().filter(pk=run_id, status=RunStatus.RUNNING).exists():
            _run_store_success(run, output)
    return run


def recipe_tag(
    *, recipe: Recipe, config: TaggingConfig, user: AbstractBaseUser | AnonymousUser | None = None
) -> TaggingRun:
    """Tag `recipe` now and return the finished run.

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
    )
    try:
        output = _tag(recipe, requests)
        run.removed_by_rule = output_apply_rules(recipe=recipe.text, output=output, requests=requests)
    except EmbeddingUnavailable as exc:
        with transaction.atomic():
            if recipe.pk is None:
                recipe.save()
            run.recipe = recipe
            run.status, run.error, run.finished_at = RunStatus.FAILED, exc.message, timezone.now()
            run.save()
        raise
    with transaction.atomic():
        _run_store_success(run, output)
    return run


def recipes_tag_bulk(*, recipes: Sequence[Recipe], config: TaggingConfig) -> list[TaggingRun]:
    """Tag many recipes in one pass: one batched embedding call, one scoring query per recipe, and
    all runs and assignments written together."""
    requests = category_requests(config=config)
    model = embedding_model_name()
    tags_ensure_embedded(requests=requests, model=model)
    started = time.perf_counter()
    try:
        recipes_embed(recipes=recipes)
    except EmbeddingError as exc:
        raise EmbeddingUnavailable(f"The embedding model is unavailable: {exc}") from exc
    tagger = SimilarityTagger(model=model, learned=learned_model_active())
    now = timezone.now()
    stored_config = config_stored(config=config, requests=requests)
    widened = requests_widened(requests=requests)
    outputs = [
        tagger.tag(recipe=recipe.text, embedding=np.asarray(recipe.embedding), requests=widened) for recipe in recipes
    ]
    rules = rules_of_requests(requests=requests)
    removed = [
        output_apply_rules(recipe=recipe.text, output=output, requests=requests, rules=rules)
        for recipe, output in zip(recipes, outputs, strict=True)
    ]
    with transaction.atomic():
        runs = TaggingRun.objects.bulk_create(
            [
                TaggingRun(
                    recipe=recipe,
                    strategy=config.strategy,
                    config=stored_config,
                    embedding_model=model,
                    status=RunStatus.SUCCEEDED,
                    started_at=now,
                    finished_at=now,
                    removed_by_rule=removed_by_rule,
                )
                for recipe, removed_by_rule in zip(recipes, removed, strict=True)
            ]
        )
        assignments: list[TagAssignment] = []
        for run, output in zip(runs, outputs, strict=True):
            assignments.extend(_assignments(run, output))
        TagAssignment.objects.bulk_create(assignments, batch_size=1000)
    logger.info("Tagged %d recipes in %.2fs", len(recipes), time.perf_counter() - started)
    return runs


def recipes_predict(
    *, texts: Sequence[RecipeText], embeddings: np.ndarray, category_slugs: Sequence[str], k: int
) -> list[dict[str, list[tuple[str, float]]]]:
    """What the similarity tagger would return for each recipe (category slug -> [(tag slug, score)]),
    ingredient rules applied, with nothing stored: for evaluating the tagger as deployed."""
    requests = category_requests(config=TaggingConfig(k=k, categories=tuple(category_slugs)))
    model = embedding_model_name()
    tags_ensure_embedded(requests=requests, model=model)
    tagger = SimilarityTagger(model=model, learned=learned_model_active())
    slugs = {r.category.pk: r.category.slug for r in requests}
    rules = rules_of_requests(requests=requests)
    widened = requests_widened(requests=requests)
    results = []
    for text, embedding in zip(texts, embeddings, strict=True):
        output = tagger.tag(recipe=text, embedding=np.asarray(embedding, dtype=np.float32), requests=widened)
        output_apply_rules(recipe=text, output=output, requests=requests, rules=rules)
        results.append({slugs[pk]: [(t.slug, t.score) for t in tags] for pk, tags in output.tags.items()})
    return results


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
