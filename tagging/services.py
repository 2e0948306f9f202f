from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from tagging.embeddings import EmbeddingError, embedding_model_name, embeddings_create
from tagging.learning import RecipeText
from tagging.models import EmbeddingCacheEntry, Recipe, RunStatus, Strategy, TagAssignment, TaggingRun
from tagging.selectors import recipe_embedding_cached
from tagging.taggers.base import CategoryRequest, TaggerOutput
from tagging.taggers.similarity import SimilarityTagger
from taxonomy.models import Category
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


class StrategyUnavailable(TaggingError):
    code = "strategy_unavailable"


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
        )


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


def _recipe_text(recipe: Recipe) -> RecipeText:
    return RecipeText(title=recipe.title, ingredients=recipe.ingredients, instructions=recipe.instructions)


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
    if config.strategy != Strategy.SIMILARITY:
        raise StrategyUnavailable(
            f"The {config.strategy!r} strategy needs a language model, and this deployment has none "
            "configured (LLM_BASE_URL and LLM_MODEL are not set). Use strategy 'similarity'.",
            details={"strategy": config.strategy, "missing_settings": ["LLM_BASE_URL", "LLM_MODEL"]},
        )
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
        batch = embeddings_create(texts=[_recipe_text(r).for_embedding() for r in todo])
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
        recipe=_recipe_text(recipe), embedding=np.asarray(recipe.embedding), requests=requests
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


def run_execute(*, run_id: int) -> TaggingRun:
    """Execute a queued run and store its assignments, all or nothing.

    Running a finished run again changes nothing, so a re-delivered task is harmless. A failure is
    recorded on the run (status `failed`, `error`) and re-raised as a TaggingError.
    """
    with transaction.atomic():
        run = TaggingRun.objects.select_for_update().select_related("recipe").get(pk=run_id)
        if run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED):
            return run
        run.status = RunStatus.RUNNING
        run.started_at = timezone.now()
        run.save(update_fields=["status", "started_at"])
    try:
        requests = _category_requests(TaggingConfig.from_dict(run.config))
        output = _tag(run.recipe, requests)
    except Exception as exc:
        # Whatever went wrong, a polling client must see the run end rather than stay "running".
        message = exc.message if isinstance(exc, TaggingError) else f"Unexpected error: {exc}"
        if not isinstance(exc, TaggingError):
            logger.exception("Unable to execute tagging run %s", run_id)
        run.status, run.error, run.finished_at = RunStatus.FAILED, message, timezone.now()
        run.save(update_fields=["status", "error", "finished_at"])
        raise
    # The categories tagged now, which may differ from those active when the run was queued.
    run.config = _stored_config(TaggingConfig.from_dict(run.config), requests)
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
) -> TaggingRun:
    """Tag an ad-hoc recipe now; the recipe is stored with its run. A config that cannot be served
    stores nothing."""
    recipe = _recipe_build(
        title=title, ingredients=ingredients, instructions=instructions, external_id=None, source="api"
    )
    return recipe_tag(recipe=recipe, config=config, user=user)


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
            output = tagger.tag(recipe=_recipe_text(recipe), embedding=np.asarray(recipe.embedding), requests=requests)
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
