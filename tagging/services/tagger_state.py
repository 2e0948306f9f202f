"""What the similarity tagger learned, as stored: the active TaggerState, loaded once per process per
state, and stored anew by a fit (feedback.training fits it on the gold labels).

A state holds its parameters (readable JSON), its labelled recipes as TrainingExamples (pgvector, HNSW:
a new recipe's nearest ones vote), and its arrays (pickled, read back by an unpickler that admits only
numpy, scipy, scikit-learn and tagging.learning).
"""

from __future__ import annotations

import io
import logging
import pickle
import threading
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Max

from autotagger.embeddings import embedding_model_name
from tagging import learning
from tagging.calibration import Calibration
from tagging.models import Recipe, TaggerState, TrainingExample
from tagging.selectors import training_examples_nearest_many
from taxonomy.embedding import tags_embed
from taxonomy.models import Category, Tag
from taxonomy.selectors import tags_needing_embedding

logger = logging.getLogger(__name__)


class PgvectorNeighbours:
    """Nearest TrainingExamples of a state, found by pgvector (the HNSW index on their embeddings)."""

    BATCH = 256

    def __init__(self, state_id: int, rows_by_example: dict[int, int]) -> None:
        self.state_id = state_id
        self.rows_by_example = rows_by_example

    def nearest(self, embeddings: np.ndarray, k: int, exclude_self: bool) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, len(self.rows_by_example))
        indices = np.zeros((len(embeddings), k), dtype=np.int64)
        sims = np.full((len(embeddings), k), -1.0, dtype=np.float32)
        # A batch of recipes asks in one round trip per BATCH rows, not one per recipe.
        for start in range(0, len(embeddings), self.BATCH):
            found = training_examples_nearest_many(
                state_id=self.state_id, embeddings=embeddings[start : start + self.BATCH], limit=k
            )
            for i, neighbours in enumerate(found, start=start):
                for j, (example_id, similarity) in enumerate(neighbours):
                    indices[i, j] = self.rows_by_example[example_id]
                    sims[i, j] = similarity
        return indices, sims


def category_specs(categories: list[Category]) -> list[learning.CategorySpec]:
    model = embedding_model_name()
    stale = list(
        tags_needing_embedding(model=model, category_ids=[c.pk for c in categories])
        .filter(active=True)
        .values_list("id", flat=True)
    )
    if stale:
        tags_embed(tag_ids=stale)
    specs = []
    for category in categories:
        tags = Tag.objects.filter(category=category, active=True, embedding_model=model).order_by("id")
        specs.append(
            learning.CategorySpec(
                slug=category.slug,
                tags=tuple(
                    learning.TagSpec(
                        slug=t.slug,
                        name=t.name,
                        synonyms=tuple(t.synonyms),
                        embedding=np.asarray(t.embedding, dtype=np.float32),
                    )
                    for t in tags
                ),
            )
        )
    return specs


def tagger_state_fitted_version(*, state: TaggerState) -> int | None:
    """The version of what the state's model reads (learning.MODEL_VERSION when it was fitted)."""
    version = state.fitted_on.get("version")
    return int(version) if version is not None else None


def tagger_state_retire() -> None:
    """No active state: the similarity tagger is zero-shot again."""
    with transaction.atomic():
        TaggerState.objects.filter(active=True).update(active=False)
        # Retired states keep their parameters for the record, not their examples.
        TrainingExample.objects.all().delete()


def tagger_state_store(
    *,
    model: learning.LearnedModel,
    recipes: Sequence[Recipe],
    data: learning.LabelledSet,
    fitted_on: dict[str, Any],
    seconds: float,
) -> TaggerState:
    """Store what `model` learned from `recipes` (rows of `data`) as the one active state."""
    artifacts = {
        "prototypes": {slug: m.prototypes for slug, m in model.categories.items()},
        "support": {slug: m.support for slug, m in model.categories.items()},
        "neighbour_labels": {slug: model.neighbour_labels[slug] for slug in model.categories},
        "text_model": model.text_model,
    }
    with transaction.atomic():
        tagger_state_retire()
        state = TaggerState.objects.create(
            active=True,
            embedding_model=embedding_model_name(),
            fitted_on={**fitted_on, "version": learning.MODEL_VERSION},
            parameters={slug: m.to_parameters() for slug, m in model.categories.items()},
            artifacts=zlib.compress(pickle.dumps(artifacts, protocol=pickle.HIGHEST_PROTOCOL)),
            duration_seconds=round(seconds, 2),
        )
        TrainingExample.objects.bulk_create(
            [
                TrainingExample(state=state, recipe=recipe, row=row, embedding=data.embeddings[row])
                for row, recipe in enumerate(recipes)
            ],
            batch_size=1000,
        )
    return state


# --- Loading the active state -------------------------------------------------------------------

_loaded: dict[str, Any] = {}
_load_lock = threading.Lock()
_warned_incompatible: set[int] = set()  # once per state and process, not on every request


def learned_model_active() -> learning.LearnedModel | None:
    """The active state as a LearnedModel (loaded once per process per state), or None when the tagger
    has learned nothing (or learned with another embedding model)."""
    state = (
        TaggerState.objects.filter(active=True, embedding_model=embedding_model_name())
        .defer("artifacts")
        .order_by("-id")
        .first()
    )
    if state is None:
        return None
    if tagger_state_fitted_version(state=state) != learning.MODEL_VERSION:
        if state.pk not in _warned_incompatible:
            _warned_incompatible.add(state.pk)
            logger.warning("Tagger state %s was fitted by another release: zero-shot until it is refitted", state.pk)
        return None
    # Tags re-embedded since the load (an edited description) must reach the zero-shot signal.
    version = (state.pk, Tag.objects.aggregate(latest=Max("embedded_at"))["latest"])
    with _load_lock:
        if _loaded.get("version") != version:
            _loaded.clear()
            _loaded.update(version=version, model=_load(state.pk))
        model: learning.LearnedModel = _loaded["model"]
        return model


class _Unpickler(pickle.Unpickler):
    """Loads only numpy, scipy, scikit-learn and our own learning classes: the blob is ours, and
    nothing else belongs in it."""

    MODULES = frozenset({"numpy", "scipy", "sklearn", "collections", "builtins", "copyreg", "_codecs", "re"})

    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] in self.MODULES or module == "tagging.learning":
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a tagger state")


def _load(state_id: int) -> learning.LearnedModel:
    state = TaggerState.objects.get(pk=state_id)
    artifacts = _Unpickler(io.BytesIO(zlib.decompress(bytes(state.artifacts)))).load()
    rows = TrainingExample.objects.filter(state=state).values_list("id", "row", "recipe_id", "recipe__title")
    rows_by_example: dict[int, int] = {}
    examples: dict[int, tuple[int | None, str]] = {}
    for example_id, row, recipe_id, title in rows:
        rows_by_example[example_id] = row
        examples[row] = (recipe_id, title or "")
    categories = list(Category.objects.filter(slug__in=list(state.parameters)))
    specs = {
        spec.slug: spec
        for spec in _stored_specs(categories, {slug: p["tag_slugs"] for slug, p in state.parameters.items()})
    }
    models = {}
    for slug, parameters in state.parameters.items():
        if slug not in specs:
            continue  # the category was deleted since the fit
        models[slug] = learning.CategoryModel(
            slug=slug,
            tag_slugs=parameters["tag_slugs"],
            weights=np.asarray(parameters["weights"], dtype=np.float32),
            bias=parameters["bias"],
            threshold=parameters["threshold"],
            prototypes=artifacts["prototypes"][slug],
            support=artifacts["support"][slug],
            labelled=parameters["labelled"],
            fit_f1=parameters["fit_f1"],
            signals=parameters["signals"],
            calibration=Calibration.from_parameters(parameters.get("calibration")),
            precision_floor=parameters.get("precision_floor"),
        )
    return learning.LearnedModel(
        categories=models,
        specs=specs,
        neighbours=PgvectorNeighbours(state.pk, rows_by_example),
        neighbour_labels=artifacts["neighbour_labels"],
        text_model=artifacts["text_model"],
        examples=examples,
    )


def _stored_specs(categories: list[Category], tag_slugs: dict[str, list[str]]) -> list[learning.CategorySpec]:
    """Specs in the tag order the state was fitted with; a tag deleted since then keeps a zero vector
    (its learned signals still work, and the tagger drops it when it maps slugs back to tags)."""
    specs = []
    for category in categories:
        tags = {t.slug: t for t in Tag.objects.filter(category=category)}
        specs.append(
            learning.CategorySpec(
                slug=category.slug,
                tags=tuple(
                    learning.TagSpec(
                        slug=slug,
                        name=tags[slug].name if slug in tags else slug,
                        synonyms=tuple(tags[slug].synonyms) if slug in tags else (),
                        embedding=(
                            np.asarray(tags[slug].embedding, dtype=np.float32)
                            if slug in tags and tags[slug].embedding is not None
                            else np.zeros(settings.EMBEDDING_DIMENSIONS, dtype=np.float32)
                        ),
                    )
                    for slug in tag_slugs[category.slug]
                ),
            )
        )
    return specs
