"""Fitting the similarity tagger on the gold labels, now or (debounced) after they change.

`tagger_fit` reads every gold label, fits `tagging.learning` on the labelled recipes and stores the
result as the active tagger state (tagging.services.tagger_state). `tagger_refit` is the worker's side
of a refit that feedback.services.labels scheduled.

When fast mode is available (the static model is distilled), each fit also fits a second state on the fast
model's vectors of the same recipes: the fast mode's neighbour votes and prototypes must compare fast vectors
with fast vectors. Fitting it costs a second `learning.fit`, not a second pass of the full model.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from autotagger.embeddings import EmbeddingMode, embedding_model_name, fast_model_available
from autotagger.redis import redis_client
from feedback.selectors import gold_label_stats, gold_labels_by_recipe
from tagging import learning
from tagging.models import EmbeddingCacheEntry, Recipe, TaggerState
from tagging.services.recipes import embeddings_cached, recipes_embed
from tagging.services.tagger_state import (
    category_specs,
    tagger_state_fitted_version,
    tagger_state_retire,
    tagger_state_store,
)
from taxonomy.limits import DEFAULT_TAGS_PER_CATEGORY
from taxonomy.models import Category, TagEmbedding

logger = logging.getLogger(__name__)

REFIT_KEY = "autotagger:tagger-refit:requested-at"


def labelled_data(
    *, mode: str = EmbeddingMode.FULL
) -> tuple[list[Recipe], learning.LabelledSet, list[learning.CategorySpec]] | None:
    """Every recipe with gold labels (embedded by the mode's model), as the learner reads them, with the active
    categories; None when there are no gold labels."""
    labels_by_recipe = gold_labels_by_recipe()
    if not labels_by_recipe:
        return None
    recipes = list(Recipe.objects.filter(pk__in=list(labels_by_recipe)).order_by("id"))
    if mode == EmbeddingMode.FAST:
        # Cached by text in the embedding cache table, never on the recipe (whose vector is the full model's).
        embeddings = embeddings_cached(texts=[r.text.for_embedding() for r in recipes], mode=mode)
    else:
        recipes_embed(recipes=recipes)
        embeddings = np.stack([np.asarray(r.embedding, dtype=np.float32) for r in recipes])
    categories = list(Category.objects.filter(active=True).order_by("position", "id"))
    data = learning.LabelledSet(
        embeddings=embeddings,
        texts=[r.text for r in recipes],
        labels=[labels_by_recipe[r.pk] for r in recipes],
    )
    return recipes, data, category_specs(categories, mode=mode)


def fitted_modes() -> list[str]:
    """The embedding modes a fit serves: the full model's, and the fast one's once it is distilled."""
    return [EmbeddingMode.FULL, EmbeddingMode.FAST] if fast_model_available() else [EmbeddingMode.FULL]


def precision_floors() -> dict[str, float | None]:
    """The precision floor staff set for each active category (None: the threshold maximises F1)."""
    return dict(Category.objects.filter(active=True).order_by("slug").values_list("slug", "precision_floor"))


def tagger_fit(*, k: int = DEFAULT_TAGS_PER_CATEGORY) -> TaggerState | None:
    """Fit on every gold label and make the result the active state (and the fast mode's, when it is
    available); with no labels, retire the active states so that the tagger is zero-shot again. Returns the
    full model's new state, or None."""
    state = None
    for mode in fitted_modes():
        fitted = tagger_fit_mode(k=k, mode=mode)
        if mode == EmbeddingMode.FULL:
            state = fitted
    return state


def tagger_fit_mode(*, k: int = DEFAULT_TAGS_PER_CATEGORY, mode: str = EmbeddingMode.FULL) -> TaggerState | None:
    """`tagger_fit` for one embedding model."""
    started = time.perf_counter()
    stats = gold_label_stats()
    labelled = labelled_data(mode=mode)
    if labelled is None:
        tagger_state_retire(mode=mode)
        logger.info("No gold labels: the similarity tagger is zero-shot")
        return None
    recipes, data, specs = labelled
    floors = precision_floors()
    model = learning.fit(
        data=data,
        categories=specs,
        k=k,
        precision_floors=floors,
        progress=lambda message: logger.info("%s", message),
    )
    state = tagger_state_store(
        model=model,
        recipes=recipes,
        data=data,
        fitted_on={**stats, "k": k, "precision_floors": floors},
        seconds=time.perf_counter() - started,
        mode=mode,
    )
    logger.info(
        "Fitted tagger state %s (%s) on %d labelled recipes (%d categories) in %.1fs",
        state.pk,
        state.embedding_model,
        len(recipes),
        len(model.categories),
        state.duration_seconds,
    )
    return state


def fast_mode_refresh() -> TaggerState | None:
    """After a (re)distillation: forget the fast vectors the previous model made (tags', cached texts'), and
    fit the fast mode's state on the new model's vectors. Returns that state, or None without gold labels."""
    name = embedding_model_name(mode=EmbeddingMode.FAST)
    TagEmbedding.objects.filter(model=name).delete()
    EmbeddingCacheEntry.objects.filter(model=name).delete()
    return tagger_fit_mode(mode=EmbeddingMode.FAST)


def tagger_fit_is_current() -> bool:
    """Whether the active state of each fitted embedding model was fitted on the gold labels and the precision
    floors as they are now."""
    stats = gold_label_stats()
    for mode in fitted_modes():
        state = TaggerState.objects.filter(active=True, embedding_model=embedding_model_name(mode=mode)).first()
        if state is None:
            if stats["labels"]:
                return False
            continue
        if tagger_state_fitted_version(state=state) != learning.MODEL_VERSION:
            return False
        fitted_on = {key: value for key, value in state.fitted_on.items() if key not in ("k", "version")}
        if fitted_on != {**stats, "precision_floors": precision_floors()}:
            return False
    return True


def tagger_refit(*, requested_at: float | None = None) -> TaggerState | None:
    """The task's work: fit unless a later request superseded this one or the state is already current."""
    if requested_at is not None:
        latest = redis_client().get(REFIT_KEY)
        if latest is not None and float(latest) > requested_at:
            logger.info("Refit skipped: a later request will fit")
            return None
    if tagger_fit_is_current():
        logger.info("Refit skipped: the tagger state already reflects the gold labels")
        return None
    return tagger_fit()
