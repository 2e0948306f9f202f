"""Few-shot examples for the LLM prompt: the labelled recipes nearest to the one being tagged, with their
gold tags, found among the active tagger state's examples (pgvector, the same neighbours the learned
tagger votes with). The recipe being tagged is never its own example: a model shown the answer measures
nothing and tags nothing better."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from django.conf import settings

from prompts.rendering import FewShotExample
from tagging import learning
from tagging.models import Recipe

# A labelled example with no stored recipe (a state fitted from a file) cannot be compared by content:
# one this close in meaning is taken to be the recipe itself.
SAME_RECIPE_SIMILARITY = 0.995
# Ingredients shown per example: enough to recognise the dish, few enough for the token budget.
EXAMPLE_INGREDIENTS = 8


def few_shot_examples_select(
    *,
    model: learning.LearnedModel | None,
    embedding: np.ndarray,
    category_slugs: Sequence[str],
    exclude_recipe_id: int | None,
    exclude_content_hash: str | None,
    limit: int | None = None,
) -> list[FewShotExample]:
    """Up to `limit` (LLM_FEW_SHOT_EXAMPLES) nearest labelled recipes, nearest first, each with its gold tags
    in `category_slugs`; none when nothing has been learned. Examples without a tag in those categories
    teach nothing here and are skipped."""
    limit = int(settings.LLM_FEW_SHOT_EXAMPLES) if limit is None else limit
    if model is None or limit <= 0 or not model.examples:
        return []
    # Look further than `limit`: the recipe itself and untagged neighbours are skipped.
    indices, sims = model.neighbours.nearest(np.asarray(embedding, dtype=np.float32)[None, :], limit + 4, False)
    rows = [(int(row), float(sim)) for row, sim in zip(indices[0], sims[0], strict=True) if sim > -1.0]
    recipe_ids = {row: model.examples.get(row, (None, ""))[0] for row, _ in rows}
    stored = Recipe.objects.in_bulk([pk for pk in recipe_ids.values() if pk is not None])
    examples: list[FewShotExample] = []
    for row, similarity in rows:
        if len(examples) == limit:
            break
        recipe_id = recipe_ids[row]
        recipe = stored.get(recipe_id) if recipe_id is not None else None
        if recipe_id is not None and recipe_id == exclude_recipe_id:
            continue
        if recipe is not None and exclude_content_hash is not None and recipe.content_hash == exclude_content_hash:
            continue
        if recipe is None and similarity >= SAME_RECIPE_SIMILARITY:
            continue
        tags = _gold_tags(model, row, category_slugs)
        if not tags:
            continue
        title = recipe.title if recipe is not None else model.examples.get(row, (None, ""))[1]
        if not title:
            continue
        ingredients = tuple(recipe.ingredients[:EXAMPLE_INGREDIENTS]) if recipe is not None else ()
        examples.append(FewShotExample(title=title, ingredients=ingredients, tags=tags))
    return examples


def _gold_tags(model: learning.LearnedModel, row: int, category_slugs: Sequence[str]) -> dict[str, tuple[str, ...]]:
    tags: dict[str, tuple[str, ...]] = {}
    for slug in category_slugs:
        labels, spec = model.neighbour_labels.get(slug), model.specs.get(slug)
        if labels is None or spec is None or row >= len(labels):
            continue
        chosen = tuple(spec.tags[column].slug for column in np.flatnonzero(labels[row] > 0))
        if chosen:
            tags[slug] = chosen
    return tags
