"""Fitting the similarity tagger on the gold labels, now or (debounced) after they change.

`tagger_fit` reads every gold label, fits `tagging.learning` on the labelled recipes and stores the
result as the active tagger state (tagging.services.tagger_state). `tagger_refit` is the worker's side
of a refit that feedback.services.labels scheduled.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from autotagger.redis import redis_client
from feedback.selectors import gold_label_stats, gold_labels_by_recipe
from tagging import learning
from tagging.models import Recipe, TaggerState
from tagging.services.recipes import recipes_embed
from tagging.services.tagger_state import (
    category_specs,
    tagger_state_fitted_version,
    tagger_state_retire,
    tagger_state_store,
)
from taxonomy.limits import DEFAULT_TAGS_PER_CATEGORY
from taxonomy.models import Category

logger = logging.getLogger(__name__)

REFIT_KEY = "autotagger:tagger-refit:requested-at"


def labelled_data() -> tuple[list[Recipe], learning.LabelledSet, list[learning.CategorySpec]] | None:
    """Every recipe with gold labels (embedded), as the learner reads them, with the active categories;
    None when there are no gold labels."""
    labels_by_recipe = gold_labels_by_recipe()
    if not labels_by_recipe:
        return None
    recipes = list(Recipe.objects.filter(pk__in=list(labels_by_recipe)).order_by("id"))
    recipes_embed(recipes=recipes)
    categories = list(Category.objects.filter(active=True).order_by("position", "id"))
    data = learning.LabelledSet(
        embeddings=np.stack([np.asarray(r.embedding, dtype=np.float32) for r in recipes]),
        texts=[r.text for r in recipes],
        labels=[labels_by_recipe[r.pk] for r in recipes],
    )
    return recipes, data, category_specs(categories)


def precision_floors() -> dict[str, float | None]:
    """The precision floor staff set for each active category (None: the threshold maximises F1)."""
    return dict(Category.objects.filter(active=True).order_by("slug").values_list("slug", "precision_floor"))


def tagger_fit(*, k: int = DEFAULT_TAGS_PER_CATEGORY) -> TaggerState | None:
    """Fit on every gold label and make the result the active state; with no labels, retire the active
    state so that the tagger is zero-shot again. Returns the new state, or None."""
    started = time.perf_counter()
    stats = gold_label_stats()
    labelled = labelled_data()
    if labelled is None:
        tagger_state_retire()
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
    )
    logger.info(
        "Fitted tagger state %s on %d labelled recipes (%d categories) in %.1fs",
        state.pk,
        len(recipes),
        len(model.categories),
        state.duration_seconds,
    )
    return state


def tagger_fit_is_current() -> bool:
    """Whether the active state was fitted on the gold labels and the precision floors as they are now."""
    state = TaggerState.objects.filter(active=True).first()
    stats = gold_label_stats()
    if state is None:
        return not stats["labels"]
    if tagger_state_fitted_version(state=state) != learning.MODEL_VERSION:
        return False
    fitted_on = {key: value for key, value in state.fitted_on.items() if key not in ("k", "version")}
    return fitted_on == {**stats, "precision_floors": precision_floors()}


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
