"""What the similarity tagger learned, as stored: the active TaggerState, loaded once per process per
state, and stored anew by a fit (feedback.training fits it on the gold labels).

A state holds its parameters (readable JSON), its labelled recipes as TrainingExamples (pgvector, HNSW:
a new recipe's nearest ones vote), and its arrays (pickled, read back by an unpickler that admits only
numpy, scipy, scikit-learn and tagging.learning).

Each embedding model has its own active state: the fast mode's is fitted on the fast model's vectors of the
same labelled recipes, so its neighbour votes and prototypes compare like with like.
"""

from __future__ import annotations

import io
import logging
import pickle
import threading
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction

from autotagger.embeddings import EmbeddingMode, embedding_model_name
from tagging import learning
from tagging.calibration import Calibration
from tagging.models import Recipe, TaggerState, TrainingExample
from tagging.selectors import training_examples_nearest_many
from taxonomy.embedding import tags_embed
from taxonomy.models import Category, Tag, TagEmbedding
from taxonomy.selectors import tags_needing_embedding, tags_version

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


def _tag_vectors(*, tag_ids: Sequence[int], mode: str) -> dict[int, np.ndarray]:
    """The tags' vectors of the mode's model: Tag.embedding for the full model, TagEmbedding for the fast one."""
    pairs: Iterable[tuple[int, Any]]
    if mode == EmbeddingMode.FAST:
        fast = TagEmbedding.objects.filter(tag_id__in=list(tag_ids), model=embedding_model_name(mode=mode))
        pairs = fast.values_list("tag_id", "embedding")
    else:
        full = Tag.objects.filter(id__in=list(tag_ids), embedding__isnull=False, embedding_model=embedding_model_name())
        pairs = full.values_list("id", "embedding")
    return {tag_id: np.asarray(vector, dtype=np.float32) for tag_id, vector in pairs}


def category_specs(categories: list[Category], *, mode: str = EmbeddingMode.FULL) -> list[learning.CategorySpec]:
    model = embedding_model_name(mode=mode)
    stale = list(
        tags_needing_embedding(model=model, category_ids=[c.pk for c in categories])
        .filter(active=True)
        .values_list("id", flat=True)
    )
    if stale:
        tags_embed(tag_ids=stale, mode=mode)
    specs = []
    for category in categories:
        tags = list(Tag.objects.filter(category=category, active=True).order_by("id"))
        vectors = _tag_vectors(tag_ids=[t.pk for t in tags], mode=mode)
        specs.append(
            learning.CategorySpec(
                slug=category.slug,
                tags=tuple(
                    learning.TagSpec(slug=t.slug, name=t.name, synonyms=tuple(t.synonyms), embedding=vectors[t.pk])
                    for t in tags
                    if t.pk in vectors
                ),
            )
        )
    return specs


def tagger_state_fitted_version(*, state: TaggerState) -> int | None:
    """The version of what the state's model reads (learning.MODEL_VERSION when it was fitted)."""
    version = state.fitted_on.get("version")
    return int(version) if version is not None else None


def tagger_state_retire(*, mode: str | None = None) -> None:
    """No active state for the mode's model (every model when `mode` is None): that tagger is zero-shot again."""
    states = TaggerState.objects.filter(active=True)
    if mode is not None:
        states = states.filter(embedding_model=embedding_model_name(mode=mode))
    with transaction.atomic():
        retired = list(states.values_list("id", flat=True))
        TaggerState.objects.filter(id__in=retired).update(active=False)
        # Retired states keep their parameters for the record, not their examples.
        TrainingExample.objects.exclude(state__active=True).delete()


def tagger_state_store(
    *,
    model: learning.LearnedModel,
    recipes: Sequence[Recipe],
    data: learning.LabelledSet,
    fitted_on: dict[str, Any],
    seconds: float,
    mode: str = EmbeddingMode.FULL,
) -> TaggerState:
    """Store what `model` learned from `recipes` (rows of `data`, embedded by the mode's model) as the one active
    state of that embedding model."""
    artifacts = {
        "prototypes": {slug: m.prototypes for slug, m in model.categories.items()},
        "support": {slug: m.support for slug, m in model.categories.items()},
        "neighbour_labels": {slug: model.neighbour_labels[slug] for slug in model.categories},
        "text_model": model.text_model,
    }
    with transaction.atomic():
        tagger_state_retire(mode=mode)
        state = TaggerState.objects.create(
            active=True,
            embedding_model=embedding_model_name(mode=mode),
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

_loaded: dict[str, dict[str, Any]] = {}  # per embedding model
_load_lock = threading.Lock()
_warned_incompatible: set[int] = set()  # once per state and process, not on every request


def learned_model_active(*, mode: str = EmbeddingMode.FULL) -> learning.LearnedModel | None:
    """The active state of the mode's embedding model as a LearnedModel (loaded once per process per state), or
    None when the tagger has learned nothing (or learned with another embedding model)."""
    name = embedding_model_name(mode=mode)
    # Only what says which state and release it is: its parameters name every tag, and reading them on every
    # call would make tagging slower as the taxonomy grows.
    state = (
        TaggerState.objects.filter(active=True, embedding_model=name).only("id", "fitted_on").order_by("-id").first()
    )
    if state is None:
        return None
    if tagger_state_fitted_version(state=state) != learning.MODEL_VERSION:
        if state.pk not in _warned_incompatible:
            _warned_incompatible.add(state.pk)
            logger.warning("Tagger state %s was fitted by another release: zero-shot until it is refitted", state.pk)
        return None
    # Tags re-embedded or edited since the load (a description, a synonym) must reach the learned signals.
    version = (state.pk, tags_version())
    with _load_lock:
        loaded = _loaded.setdefault(name, {})
        if loaded.get("version") != version:
            loaded.clear()
            loaded.update(version=version, model=_load(state.pk, mode=mode))
        model: learning.LearnedModel = loaded["model"]
        return model


class _Unpickler(pickle.Unpickler):
    """Loads only numpy, scipy, scikit-learn and our own learning classes: the blob is ours, and
    nothing else belongs in it."""

    MODULES = frozenset({"numpy", "scipy", "sklearn", "collections", "builtins", "copyreg", "_codecs", "re"})

    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] in self.MODULES or module == "tagging.learning":
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a tagger state")


def _load(state_id: int, *, mode: str) -> learning.LearnedModel:
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
        for spec in _stored_specs(categories, {slug: p["tag_slugs"] for slug, p in state.parameters.items()}, mode=mode)
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


def _stored_specs(
    categories: list[Category], tag_slugs: dict[str, list[str]], *, mode: str
) -> list[learning.CategorySpec]:
    """Specs in the tag order the state was fitted with; a tag deleted since then keeps a zero vector
    (its learned signals still work, and the tagger drops it when it maps slugs back to tags)."""
    specs = []
    for category in categories:
        tags = {t.slug: t for t in Tag.objects.filter(category=category)}
        vectors = _tag_vectors(tag_ids=[t.pk for t in tags.values()], mode=mode)
        specs.append(
            learning.CategorySpec(
                slug=category.slug,
                tags=tuple(
                    learning.TagSpec(
                        slug=slug,
                        name=tags[slug].name if slug in tags else slug,
                        synonyms=tuple(tags[slug].synonyms) if slug in tags else (),
                        embedding=(
                            vectors[tags[slug].pk]
                            if slug in tags and tags[slug].pk in vectors
                            else np.zeros(settings.EMBEDDING_DIMENSIONS, dtype=np.float32)
                        ),
                    )
                    for slug in tag_slugs[category.slug]
                ),
            )
        )
    return specs
