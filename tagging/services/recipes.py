"""Recipes: create, update and delete them, and give them embeddings (reusing vectors of identical content)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from autotagger.bulk_updates import rows_update
from autotagger.embeddings import EmbeddingError, EmbeddingMode, embedding_model_name, embeddings_create
from autotagger.permissions import User, can_change_gold_labelled_recipes
from tagging.models import EmbeddingCacheEntry, Recipe
from tagging.selectors import recipe_embeddings_cached, recipe_is_gold_labelled
from tagging.services.config import TaggingError, user_or_none
from tagging.taggers.base import CategoryRequest
from taxonomy.embedding import tags_embed
from taxonomy.selectors import tags_needing_embedding

logger = logging.getLogger(__name__)


class InvalidRecipe(TaggingError):
    code = "invalid_recipe"


class RecipeConflict(TaggingError):
    code = "conflict"
    status = 409


class EmbeddingUnavailable(TaggingError):
    code = "embedding_unavailable"
    status = 503


class RecipeGoldLabelled(TaggingError):
    """Only curators (staff, reviewers) change or delete a recipe with gold labels, even one a client owns."""

    code = "recipe_gold_labelled"
    status = 403


class RecipeHasGoldLabels(TaggingError):
    """Deleting a recipe never deletes its gold labels with it: they have to go first."""

    code = "recipe_has_gold_labels"
    status = 409


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


def recipe_build(
    *,
    title: str,
    ingredients: Sequence[str],
    instructions: str,
    external_id: str | None,
    source: str,
    created_by: User | None = None,
) -> Recipe:
    return Recipe(
        created_by=user_or_none(user=created_by),
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
    created_by: User | None = None,
) -> Recipe:
    """Store a recipe; `created_by` (the API client) owns it, or nobody (imports, staff's tools)."""
    recipe = recipe_build(
        title=title,
        ingredients=ingredients,
        instructions=instructions,
        external_id=external_id,
        source=source,
        created_by=created_by,
    )
    try:
        with transaction.atomic():
            recipe.save()
    except IntegrityError as exc:
        raise _conflict_or(exc, recipe) from exc
    return recipe


def _gold_labelled_check(*, recipe: Recipe, actor: User | None, verb: str) -> bool:
    """Whether the recipe has gold labels; refuses an actor who is not a curator."""
    gold_labelled = recipe.pk is not None and recipe_is_gold_labelled(recipe=recipe)
    if gold_labelled and not can_change_gold_labelled_recipes(actor):
        raise RecipeGoldLabelled(
            f"Recipe {recipe.pk} has gold labels: only staff and reviewers may {verb} it.",
            details={"recipe_id": recipe.pk},
        )
    return gold_labelled


def recipe_update(*, recipe: Recipe, data: dict[str, Any], actor: User | None) -> Recipe:
    """Change some of a recipe's fields; a change of content drops its stored embedding. A gold-labelled
    recipe is changed only by a curator (`actor` staff or reviewer)."""
    _gold_labelled_check(recipe=recipe, actor=actor, verb="change")
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


def recipe_delete(*, recipe: Recipe, actor: User | None) -> None:
    """Delete a recipe and its runs. A gold-labelled one is refused: to a client (RecipeGoldLabelled), and to a
    curator too until its labels are gone (RecipeHasGoldLabels; the database protects them as well)."""
    refused = RecipeHasGoldLabels(
        f"Recipe {recipe.pk} has gold labels; they are kept, so the recipe cannot be deleted.",
        details={"recipe_id": recipe.pk},
    )
    if _gold_labelled_check(recipe=recipe, actor=actor, verb="delete"):
        raise refused
    try:
        with transaction.atomic():
            recipe.delete()
    except ProtectedError as exc:
        # Labelled between the check and the delete.
        raise refused from exc


def tags_ensure_embedded(*, requests: Sequence[CategoryRequest], model: str) -> None:
    """Tags added since the last embedding pass are embedded now rather than silently left out."""
    missing = list(
        tags_needing_embedding(model=model, category_ids=[r.category.pk for r in requests])
        .filter(active=True)
        .values_list("id", flat=True)
    )
    if missing:
        fast = model == embedding_model_name(mode=EmbeddingMode.FAST)
        tags_embed(tag_ids=missing, mode=EmbeddingMode.FAST if fast else EmbeddingMode.FULL)


def recipes_embed_fast(
    *, recipes: Sequence[Recipe], requests: Sequence[CategoryRequest], cache: bool = True
) -> tuple[np.ndarray, float]:
    """The recipes' vectors of the fast model, and the seconds spent in it, with the tags the requests could
    return embedded by the same model. Never stored on a recipe (Recipe.embedding keeps the full model's): they
    cost well under a millisecond a recipe to compute again. Raises EmbeddingUnavailable (the model was not
    distilled, or cannot load). `cache`: see embeddings_create (a bulk pass leaves the cache alone)."""
    try:
        tags_ensure_embedded(requests=requests, model=embedding_model_name(mode=EmbeddingMode.FAST))
        batch = embeddings_create(texts=[r.text.for_embedding() for r in recipes], mode=EmbeddingMode.FAST, cache=cache)
    except EmbeddingError as exc:
        logger.exception("Unable to embed %d recipes with the fast model", len(recipes))
        raise EmbeddingUnavailable(f"The fast embedding model is unavailable: {exc}") from exc
    return batch.vectors, batch.seconds


def recipe_embed_for_tagging(*, recipe: Recipe, requests: Sequence[CategoryRequest]) -> float:
    """Embed the tags the requests could return and `recipe` (not saved), for tagging it now; returns the
    seconds spent in the model. Raises EmbeddingUnavailable when the model cannot run."""
    try:
        tags_ensure_embedded(requests=requests, model=embedding_model_name())
        return recipes_embed(recipes=[recipe], save=False)
    except EmbeddingError as exc:
        logger.exception("Unable to embed recipe %r", recipe.title)
        raise EmbeddingUnavailable(f"The embedding model is unavailable: {exc}") from exc


def recipes_embed(*, recipes: Sequence[Recipe], save: bool = True, cache: bool = True) -> float:
    """Give every recipe an embedding of the current model, reusing vectors of identical content.

    With `save=False` the vectors are only set on the objects (the caller stores them in its own
    transaction). `cache`: see embeddings_create. Returns the seconds spent in the model.
    """
    model = embedding_model_name()
    todo: list[Recipe] = []
    changed: list[Recipe] = []
    missing = [recipe for recipe in recipes if recipe.embedding is None or recipe.embedding_model != model]
    known = recipe_embeddings_cached(content_hashes={r.content_hash for r in missing}, model=model) if missing else {}
    for recipe in missing:
        cached = known.get(recipe.content_hash)
        if cached is not None:
            recipe.embedding, recipe.embedding_model = cached, model
            changed.append(recipe)
        else:
            todo.append(recipe)
    seconds = 0.0
    if todo:
        batch = embeddings_create(texts=[r.text.for_embedding() for r in todo], cache=cache)
        for recipe, vector in zip(todo, batch.vectors, strict=True):
            recipe.embedding, recipe.embedding_model = vector, batch.model
        changed.extend(todo)
        seconds = batch.seconds
    if save and changed:
        rows_update(
            model=Recipe,
            fields=["embedding", "embedding_model"],
            rows=[(r.pk, r.embedding, r.embedding_model) for r in changed if r.pk],
        )
    return seconds


def embeddings_cached(*, texts: Sequence[str], mode: str = EmbeddingMode.FULL) -> np.ndarray:
    """Vectors of `texts` (by the mode's model) from the embedding cache table, embedding (and caching) only the
    new ones."""
    model = embedding_model_name(mode=mode)
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
        batch = embeddings_create(texts=[texts[i] for i in chunk], mode=mode)
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
