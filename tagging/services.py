from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import IntegrityError, transaction
from django.db.models import Count, Sum
from django.utils import timezone

from tagging.embeddings import EmbeddingError, embedding_model_name, embeddings_create
from tagging.learning import RecipeText
from tagging.models import (
    EmbeddingCacheEntry,
    Recipe,
    RunStatus,
    Strategy,
    TagAssignment,
    TaggerState,
    TaggingJob,
    TaggingRun,
)
from tagging.selectors import recipe_embedding_cached
from tagging.taggers.base import CategoryRequest, ScoredTag, TaggerOutput
from tagging.taggers.similarity import SimilarityTagger
from taxonomy.models import Category, Tag
from taxonomy.selectors import categories_by_slugs, tags_needing_embedding
from taxonomy.services import tags_embed

logger = logging.getLogger(__name__)


class TaggingError(Exception):
    """A tagging request that cannot be served; `code` and `status` say how the API reports it."""

    code = "tagging_error"
    status = 400

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class LLMNotConfiguredError(TaggingError):
    code = "llm_not_configured"


class LLMFailed(TaggingError):
    """The language model could not give a usable answer (after the bounded retries)."""

    code = "llm_failed"
    status = 502


class UnknownCategories(TaggingError):
    code = "unknown_category"


class InvalidTaggingConfig(TaggingError):
    code = "invalid_config"


class InvalidRecipe(TaggingError):
    code = "invalid_recipe"


class RecipeConflict(TaggingError):
    code = "conflict"
    status = 409


class EmbeddingUnavailable(TaggingError):
    code = "embedding_unavailable"
    status = 503


@dataclass(frozen=True)
class TaggingConfig:
    strategy: str = Strategy.SIMILARITY
    k: int | None = None
    categories: tuple[str, ...] | None = None
    threshold: float | None = None
    source: str | None = None  # the LLM source for llm and hybrid; None: LLM_DEFAULT_SOURCE

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["categories"] = list(self.categories) if self.categories is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaggingConfig:
        categories = data.get("categories")
        return cls(
            strategy=data.get("strategy", Strategy.SIMILARITY),
            k=data.get("k"),
            categories=tuple(categories) if categories is not None else None,
            threshold=data.get("threshold"),
            source=data.get("source"),
        )

    @property
    def uses_llm(self) -> bool:
        return self.strategy in (Strategy.LLM, Strategy.HYBRID)


def recipe_content_hash(*, title: str, ingredients: Sequence[str], instructions: str) -> str:
    """The same for any two recipes that are stored the same (blank ingredient lines are dropped)."""
    canonical = json.dumps(
        {
            "title": title.strip(),
            "ingredients": [i.strip() for i in ingredients if i.strip()],
            "instructions": instructions.strip(),
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _recipe_build(
    *, title: str, ingredients: Sequence[str], instructions: str, external_id: str | None, source: str
) -> Recipe:
    return Recipe(
        title=title.strip(),
        ingredients=[i.strip() for i in ingredients if i.strip()],
        instructions=instructions.strip(),
        external_id=(external_id or "").strip() or None,
        source=source or "api",
        content_hash=recipe_content_hash(title=title, ingredients=ingredients, instructions=instructions),
    )


def recipe_create(
    *,
    title: str,
    ingredients: Sequence[str],
    instructions: str,
    external_id: str | None = None,
    source: str = "api",
) -> Recipe:
    recipe = _recipe_build(
        title=title, ingredients=ingredients, instructions=instructions, external_id=external_id, source=source
    )
    try:
        with transaction.atomic():
            recipe.save()
    except IntegrityError as exc:
        raise _conflict_or(exc, recipe) from exc
    return recipe


def recipe_update(*, recipe: Recipe, data: dict[str, Any]) -> Recipe:
    """Change some of a recipe's fields; a change of content drops its stored embedding."""
    for name in ("title", "instructions", "source"):
        if name in data:
            setattr(recipe, name, data[name].strip())
    if "external_id" in data:
        recipe.external_id = (data["external_id"] or "").strip() or None
    if "ingredients" in data:
        recipe.ingredients = [i.strip() for i in data["ingredients"] if i.strip()]
    if not recipe.title:
        raise InvalidRecipe("A recipe needs a title.", details={"title": ["This field may not be blank."]})
    if not recipe.ingredients and not recipe.instructions:
        raise InvalidRecipe(
            "A recipe needs ingredients or instructions.",
            details={"ingredients": ["Give ingredients, instructions or both."]},
        )
    content_hash = recipe_content_hash(
        title=recipe.title, ingredients=recipe.ingredients, instructions=recipe.instructions
    )
    if content_hash != recipe.content_hash:
        recipe.content_hash = content_hash
        recipe.embedding = None
        recipe.embedding_model = ""
    try:
        with transaction.atomic():
            recipe.save()
    except IntegrityError as exc:
        raise _conflict_or(exc, recipe) from exc
    return recipe


def _conflict_or(exc: IntegrityError, recipe: Recipe) -> Exception:
    """A duplicate (source, external_id) as a 409; any other integrity error unchanged."""
    duplicate = (
        Recipe.objects.filter(source=recipe.source, external_id=recipe.external_id).exclude(pk=recipe.pk).exists()
        if recipe.external_id
        else False
    )
    if not duplicate:
        return exc
    return RecipeConflict(
        f"A recipe with external_id {recipe.external_id!r} from source {recipe.source!r} already exists.",
        details={"external_id": recipe.external_id, "source": recipe.source},
    )


def recipe_delete(*, recipe: Recipe) -> None:
    recipe.delete()


def _category_requests(config: TaggingConfig) -> list[CategoryRequest]:
    if config.strategy not in Strategy.values:
        raise InvalidTaggingConfig(
            f"Unknown strategy {config.strategy!r}.", details={"strategy": [f"Choose one of {Strategy.values}."]}
        )
    if config.uses_llm:
        _llm_source(config)
    if config.k is not None and not 1 <= config.k <= settings.TAGGING_MAX_K:
        raise InvalidTaggingConfig(f"k must be between 1 and {settings.TAGGING_MAX_K}.", details={"k": config.k})
    if config.threshold is not None and not 0 <= config.threshold <= 1:
        raise InvalidTaggingConfig("threshold must be between 0 and 1.", details={"threshold": config.threshold})
    if config.categories is None:
        categories = list(Category.objects.filter(active=True).order_by("position", "name", "id"))
    else:
        categories, unknown = categories_by_slugs(slugs=config.categories)
        if unknown:
            raise UnknownCategories(
                f"Unknown or inactive categories: {', '.join(unknown)}.", details={"categories": unknown}
            )
    if not categories:
        raise InvalidTaggingConfig("There are no active categories to tag with; load or create a taxonomy first.")
    return [
        CategoryRequest(
            category=category,
            k=config.k or category.default_max_tags,
            threshold=_threshold(config, category),
            override=config.threshold,
        )
        for category in categories
    ]


def _threshold(config: TaggingConfig, category: Category) -> float:
    if config.threshold is not None:
        return config.threshold
    if category.relevance_threshold is not None:
        return category.relevance_threshold
    return float(settings.TAGGING_DEFAULT_THRESHOLD)


def _llm_source(config: TaggingConfig) -> Any:
    from tagging.llm import LLMNotConfigured, llm_source_get

    try:
        return llm_source_get(name=config.source)
    except LLMNotConfigured as exc:
        raise LLMNotConfiguredError(
            f"The {config.strategy!r} strategy needs a language model: {exc.message}",
            details={"strategy": config.strategy, **exc.details},
        ) from exc


def tagging_config_validate(*, config: TaggingConfig) -> None:
    """Raise TaggingError if `config` cannot be served (before anything is stored or queued)."""
    _category_requests(config)


def _tags_ensure_embedded(requests: Sequence[CategoryRequest], model: str) -> None:
    """Tags added since the last embedding pass are embedded now rather than silently left out."""
    missing = list(
        tags_needing_embedding(model=model, category_ids=[r.category.pk for r in requests])
        .filter(active=True)
        .values_list("id", flat=True)
    )
    if missing:
        tags_embed(tag_ids=missing)


def recipes_embed(*, recipes: Sequence[Recipe], save: bool = True) -> float:
    """Give every recipe an embedding of the current model, reusing vectors of identical content.

    With `save=False` the vectors are only set on the objects (the caller stores them in its own
    transaction). Returns the seconds spent in the model.
    """
    model = embedding_model_name()
    todo: list[Recipe] = []
    changed: list[Recipe] = []
    for recipe in recipes:
        if recipe.embedding is not None and recipe.embedding_model == model:
            continue
        cached = recipe_embedding_cached(content_hash=recipe.content_hash, model=model)
        if cached is not None:
            recipe.embedding, recipe.embedding_model = cached, model
            changed.append(recipe)
        else:
            todo.append(recipe)
    seconds = 0.0
    if todo:
        batch = embeddings_create(texts=[r.text.for_embedding() for r in todo])
        for recipe, vector in zip(todo, batch.vectors, strict=True):
            recipe.embedding, recipe.embedding_model = vector, batch.model
        changed.extend(todo)
        seconds = batch.seconds
    if save and changed:
        Recipe.objects.bulk_update([r for r in changed if r.pk], ["embedding", "embedding_model"], batch_size=500)
    return seconds


def _assignments(run: TaggingRun, output: TaggerOutput) -> list[TagAssignment]:
    return [
        TagAssignment(run=run, tag_id=scored.tag_id, score=scored.score, rank=rank)
        for tags in output.tags.values()
        for rank, scored in enumerate(tags, start=1)
    ]


def _stored_config(config: TaggingConfig, requests: Sequence[CategoryRequest]) -> dict[str, Any]:
    # The categories actually tagged, so a run shows a category that got nothing as such.
    return {**config.as_dict(), "category_slugs": [r.category.slug for r in requests]}


def _learned_model() -> Any:
    from tagging.training import learned_model_active

    return learned_model_active()


def _tag(recipe: Recipe, requests: Sequence[CategoryRequest]) -> TaggerOutput:
    """Score `recipe` (its embedding is computed if needed, but not saved). Raises EmbeddingUnavailable."""
    started = time.perf_counter()
    model = embedding_model_name()
    try:
        _tags_ensure_embedded(requests, model)
        embed_seconds = recipes_embed(recipes=[recipe], save=False)
    except EmbeddingError as exc:
        logger.exception("Unable to embed recipe %r", recipe.title)
        raise EmbeddingUnavailable(f"The embedding model is unavailable: {exc}") from exc
    output = SimilarityTagger(model=model, learned=_learned_model()).tag(
        recipe=recipe.text, embedding=np.asarray(recipe.embedding), requests=requests
    )
    output.timings_ms["embed_ms"] = round(embed_seconds * 1000, 2)
    output.timings_ms["total_ms"] = round((time.perf_counter() - started) * 1000, 2)
    return output


def _taxonomy_version(requests: Sequence[CategoryRequest]) -> str:
    """Changes whenever a category the requests cover or a tag they could return is edited, added,
    (de)activated or removed: everything the prompt shows of the taxonomy."""
    category_ids = [r.category.pk for r in requests]
    categories = Category.objects.filter(pk__in=category_ids).order_by("id").values_list("id", "updated_at")
    tags = Tag.objects.filter(category_id__in=category_ids).order_by("id").values_list("id", "updated_at", "active")
    return hashlib.sha256(repr((list(categories), list(tags))).encode()).hexdigest()


def _llm_cache_key(recipe: Recipe, config: TaggingConfig, requests: Sequence[CategoryRequest], source: Any) -> str:
    from tagging.taggers.llm_prompt import PROMPT_VERSION

    parts = {
        "content": recipe.content_hash,
        "prompt": PROMPT_VERSION,
        "taxonomy": _taxonomy_version(requests),
        "model": f"{source.base_url}|{source.model}",
        "strategy": config.strategy,
        "k": {r.category.slug: r.k for r in requests},
        "threshold": config.threshold,
        # Hybrid's shortlist also depends on the similarity tagger: its model and what it learned.
        "hybrid": [
            settings.HYBRID_ACCEPT,
            settings.HYBRID_FLOOR,
            embedding_model_name(),
            TaggerState.objects.filter(active=True).values_list("id", flat=True).first(),
        ]
        if config.strategy == Strategy.HYBRID
        else None,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _llm_cached(key: str, run: TaggingRun, requests: Sequence[CategoryRequest]) -> TaggerOutput | None:
    """The tags of an earlier successful run with the same cache key: same recipe content, prompt
    version, taxonomy version, model and settings, so the LLM would be asked the same question."""
    earlier = (
        TaggingRun.objects.filter(status=RunStatus.SUCCEEDED, stats__cache_key=key)
        .exclude(pk=run.pk)
        .order_by("-id")
        .first()
    )
    if earlier is None:
        return None
    output = TaggerOutput(tags={r.category.pk: [] for r in requests})
    for assignment in earlier.assignments.select_related("tag").order_by("rank", "id"):
        if assignment.tag.category_id in output.tags:
            output.tags[assignment.tag.category_id].append(
                ScoredTag(
                    tag_id=assignment.tag_id, slug=assignment.tag.slug, name=assignment.tag.name, score=assignment.score
                )
            )
    return output


def _tag_with_llm(
    run: TaggingRun, config: TaggingConfig, requests: Sequence[CategoryRequest]
) -> tuple[TaggerOutput, dict[str, Any]]:
    """Tag with the llm or hybrid strategy (on the worker: this waits on the model). Raises TaggingError."""
    from tagging.llm import LLMError
    from tagging.taggers.hybrid import HybridTagger
    from tagging.taggers.llm import LLMTagger
    from tagging.taggers.llm_prompt import PROMPT_VERSION

    started = time.perf_counter()
    source = _llm_source(config)
    recipe = run.recipe
    key = _llm_cache_key(recipe, config, requests, source)
    described = {"cache_key": key, "prompt_version": PROMPT_VERSION, "source": source.name, "llm_model": source.model}
    cached = _llm_cached(key, run, requests)
    if cached is not None:
        cached.timings_ms = {"total_ms": round((time.perf_counter() - started) * 1000, 2)}
        return cached, {**described, "cache_hit": True, "llm_calls": 0}
    try:
        if config.strategy == Strategy.HYBRID:
            model = embedding_model_name()
            try:
                _tags_ensure_embedded(requests, model)
                recipes_embed(recipes=[recipe], save=False)
            except EmbeddingError as exc:
                raise EmbeddingUnavailable(f"The embedding model is unavailable: {exc}") from exc
            similarity = SimilarityTagger(model=model, learned=_learned_model())
            output, stats = HybridTagger(similarity=similarity, source=source).tag(
                recipe=recipe.text, embedding=np.asarray(recipe.embedding), requests=requests, run_id=run.pk
            )
        else:
            output, stats = LLMTagger(source=source).tag(recipe=recipe.text, requests=requests, run_id=run.pk)
    except LLMError as exc:
        raise LLMFailed(exc.message, details={"llm_error": exc.code}) from exc
    output.timings_ms["total_ms"] = round((time.perf_counter() - started) * 1000, 2)
    # What every attempt used and cost (a retried call pays for each try), from the call records.
    spent = run.llm_calls.aggregate(
        calls=Count("id"),
        input=Sum("input_tokens"),
        output=Sum("output_tokens"),
        cached=Sum("cached_tokens"),
        cost=Sum("cost"),
    )
    usage = {
        "llm_calls": spent["calls"] or 0,
        "input_tokens": spent["input"] or 0,
        "output_tokens": spent["output"] or 0,
        "cached_tokens": spent["cached"] or 0,
        "cost": round(spent["cost"] or 0.0, 6),
    }
    return output, {**described, **stats.as_dict(), **usage, "cache_hit": False}


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
    requests = _category_requests(config)
    return TaggingRun.objects.create(
        recipe=recipe,
        strategy=config.strategy,
        config=_stored_config(config, requests),
        embedding_model=embedding_model_name(),
        status=RunStatus.QUEUED,
        created_by=_user_or_none(user),
    )


def _user_or_none(user: AbstractBaseUser | AnonymousUser | None) -> Any:
    return user if user is not None and user.is_authenticated else None


# How long a started run belongs to the task copy that started it: the run task's hard time limit.
RUN_CLAIM = timedelta(seconds=180)


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
        requests = _category_requests(config)
        if config.uses_llm:
            output, stats = _tag_with_llm(run, config, requests)
        else:
            output, stats = _tag(run.recipe, requests), {}
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
    run.config = _stored_config(config, requests)
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
    requests = _category_requests(config)
    run = TaggingRun(
        recipe=recipe,
        strategy=config.strategy,
        config=_stored_config(config, requests),
        created_by=_user_or_none(user),
        started_at=timezone.now(),
    )
    try:
        output = _tag(recipe, requests)
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


def recipe_tag_async(
    *, recipe: Recipe, config: TaggingConfig, user: AbstractBaseUser | AnonymousUser | None = None
) -> TaggingRun:
    """Queue tagging of `recipe` on the Celery worker; the run is `queued` until the worker takes it."""
    from tagging.tasks import run_execute_task

    with transaction.atomic():
        run = run_create(recipe=recipe, config=config, user=user)
        transaction.on_commit(lambda: _run_enqueue(run, run_execute_task))
    return run


def _runs_enqueue(runs: Sequence[TaggingRun], task: Any) -> None:
    for run in runs:
        _run_enqueue(run, task)


def _run_enqueue(run: TaggingRun, task: Any) -> None:
    try:
        task.delay(run_id=run.pk)
    except Exception as exc:  # kombu raises several types for an unreachable broker
        logger.exception("Unable to queue tagging run %s", run.pk)
        run.status, run.error, run.finished_at = (
            RunStatus.FAILED,
            f"The task queue is unavailable: {exc}",
            timezone.now(),
        )
        TaggingRun.objects.filter(pk=run.pk).update(status=run.status, error=run.error, finished_at=run.finished_at)


def recipe_tag_adhoc(
    *,
    title: str,
    ingredients: Sequence[str],
    instructions: str,
    config: TaggingConfig,
    user: AbstractBaseUser | AnonymousUser | None = None,
    wait: float = 0.0,
) -> TaggingRun:
    """Tag an ad-hoc recipe; the recipe is stored with its run. A config that cannot be served stores
    nothing. Strategies that use the LLM run on the worker (see recipe_tag_request)."""
    recipe = _recipe_build(
        title=title, ingredients=ingredients, instructions=instructions, external_id=None, source="api"
    )
    if config.uses_llm:
        tagging_config_validate(config=config)
        recipe.save()
    return recipe_tag_request(recipe=recipe, config=config, user=user, run_async=False, wait=wait)


def recipe_tag_request(
    *,
    recipe: Recipe,
    config: TaggingConfig,
    user: AbstractBaseUser | AnonymousUser | None = None,
    run_async: bool,
    wait: float = 0.0,
) -> TaggingRun:
    """Tag as a client asked: in this process for similarity (unless `run_async`), on the worker for
    the strategies that use the LLM (they wait on a remote model), waiting up to `wait` seconds
    (bounded by TAGGING_MAX_WAIT_SECONDS) for the worker to finish."""
    if not config.uses_llm and not run_async:
        return recipe_tag(recipe=recipe, config=config, user=user)
    run = recipe_tag_async(recipe=recipe, config=config, user=user)
    if wait > 0:
        return run_wait(run_id=run.pk, seconds=wait)
    return run


def run_wait(*, run_id: int, seconds: float) -> TaggingRun:
    """The run once it has finished, or as it is after `seconds` (at most TAGGING_MAX_WAIT_SECONDS)."""
    deadline = time.monotonic() + min(max(seconds, 0.0), settings.TAGGING_MAX_WAIT_SECONDS)
    while True:
        run = TaggingRun.objects.get(pk=run_id)
        if run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED) or time.monotonic() >= deadline:
            return run
        time.sleep(0.1)


def recipes_tag_bulk(*, recipes: Sequence[Recipe], config: TaggingConfig) -> list[TaggingRun]:
    """Tag many recipes in one pass: one batched embedding call, one scoring query per recipe, and
    all runs and assignments written together."""
    requests = _category_requests(config)
    model = embedding_model_name()
    _tags_ensure_embedded(requests, model)
    started = time.perf_counter()
    try:
        recipes_embed(recipes=recipes)
    except EmbeddingError as exc:
        raise EmbeddingUnavailable(f"The embedding model is unavailable: {exc}") from exc
    tagger = SimilarityTagger(model=model, learned=_learned_model())
    now = timezone.now()
    stored_config = _stored_config(config, requests)
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
                )
                for recipe in recipes
            ]
        )
        assignments: list[TagAssignment] = []
        for run, recipe in zip(runs, recipes, strict=True):
            output = tagger.tag(recipe=recipe.text, embedding=np.asarray(recipe.embedding), requests=requests)
            assignments.extend(_assignments(run, output))
        TagAssignment.objects.bulk_create(assignments, batch_size=1000)
    logger.info("Tagged %d recipes in %.2fs", len(recipes), time.perf_counter() - started)
    return runs


def embeddings_cached(*, texts: Sequence[str]) -> np.ndarray:
    """Vectors of `texts` from the embedding cache table, embedding (and caching) only the new ones."""
    model = embedding_model_name()
    hashes = [hashlib.sha256(text.encode("utf-8")).hexdigest() for text in texts]
    vectors = np.zeros((len(texts), settings.EMBEDDING_DIMENSIONS), dtype=np.float32)
    found: dict[str, np.ndarray] = {}
    unique = list(dict.fromkeys(hashes))
    for start in range(0, len(unique), 1000):
        rows = EmbeddingCacheEntry.objects.filter(model=model, text_sha256__in=unique[start : start + 1000])
        found.update((h, np.asarray(v, dtype=np.float32)) for h, v in rows.values_list("text_sha256", "embedding"))
    missing = [i for i, h in enumerate(hashes) if h not in found]
    first_of_hash = list({hashes[i]: i for i in reversed(missing)}.values())
    for start in range(0, len(first_of_hash), 256):
        chunk = first_of_hash[start : start + 256]
        batch = embeddings_create(texts=[texts[i] for i in chunk])
        EmbeddingCacheEntry.objects.bulk_create(
            [
                EmbeddingCacheEntry(model=model, text_sha256=hashes[i], embedding=vector)
                for i, vector in zip(chunk, batch.vectors, strict=True)
            ],
            ignore_conflicts=True,
        )
        found.update((hashes[i], vector) for i, vector in zip(chunk, batch.vectors, strict=True))
    for i, h in enumerate(hashes):
        vectors[i] = found[h]
    return vectors


def recipes_predict(
    *, texts: Sequence[RecipeText], embeddings: np.ndarray, category_slugs: Sequence[str], k: int
) -> list[dict[str, list[tuple[str, float]]]]:
    """What the similarity tagger would return for each recipe (category slug -> [(tag slug, score)]),
    with nothing stored: for evaluating the tagger as deployed."""
    requests = _category_requests(TaggingConfig(k=k, categories=tuple(category_slugs)))
    model = embedding_model_name()
    _tags_ensure_embedded(requests, model)
    tagger = SimilarityTagger(model=model, learned=_learned_model())
    slugs = {r.category.pk: r.category.slug for r in requests}
    results = []
    for text, embedding in zip(texts, embeddings, strict=True):
        output = tagger.tag(recipe=text, embedding=np.asarray(embedding, dtype=np.float32), requests=requests)
        results.append({slugs[pk]: [(t.slug, t.score) for t in tags] for pk, tags in output.tags.items()})
    return results


MAX_JOB_RECIPES = 10_000


class InvalidJob(TaggingError):
    code = "invalid_job"


def recipes_tag_job(
    *,
    recipe_ids: Sequence[int] | None,
    filters: dict[str, Any] | None,
    config: TaggingConfig,
    user: AbstractBaseUser | AnonymousUser | None = None,
) -> TaggingJob:
    """Tag many recipes on the worker: a job with one queued run per recipe, chosen by id or by filter
    (source, tag slug, untagged). Nothing is created if the selection or config is invalid."""
    from tagging.selectors import recipes_for_job
    from tagging.tasks import run_execute_task

    requests = _category_requests(config)
    if (recipe_ids is None) == (filters is None):
        raise InvalidJob("Give either recipe_ids or filter.", details={"recipe_ids": recipe_ids, "filter": filters})
    recipes = recipes_for_job(recipe_ids=recipe_ids, filters=filters, limit=MAX_JOB_RECIPES + 1)
    if recipe_ids is not None:
        missing = sorted(set(recipe_ids) - {r.pk for r in recipes})
        if missing:
            raise InvalidJob(f"No recipes with ids {missing[:20]}.", details={"recipe_ids": missing})
    if not recipes:
        raise InvalidJob("No recipe matches the selection.", details={"filter": filters})
    if len(recipes) > MAX_JOB_RECIPES:
        raise InvalidJob(
            f"A job tags at most {MAX_JOB_RECIPES} recipes; narrow the selection.", details={"limit": MAX_JOB_RECIPES}
        )
    stored_config = _stored_config(config, requests)
    with transaction.atomic():
        job = TaggingJob.objects.create(
            strategy=config.strategy,
            config=stored_config,
            selection={"recipe_ids": list(recipe_ids)} if recipe_ids is not None else {"filter": filters},
            total=len(recipes),
            created_by=_user_or_none(user),
        )
        runs = TaggingRun.objects.bulk_create(
            [
                TaggingRun(
                    recipe=recipe,
                    job=job,
                    strategy=config.strategy,
                    config=stored_config,
                    embedding_model=embedding_model_name(),
                    status=RunStatus.QUEUED,
                    created_by=_user_or_none(user),
                )
                for recipe in recipes
            ],
            batch_size=1000,
        )
        transaction.on_commit(lambda: _runs_enqueue(runs, run_execute_task))
    return job
