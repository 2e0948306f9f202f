"""The learned tagger's nearest labelled recipes, found by pgvector: the same as exact search on a state's
examples, only that state's, and a batch answered in one query exactly as one recipe at a time."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tagging.models import TaggerState, TrainingExample
from tagging.selectors import training_examples_nearest, training_examples_nearest_many
from tagging.services.tagger_state import PgvectorNeighbours

pytestmark = pytest.mark.django_db

DIMENSIONS = 384


def _unit(rng: np.random.Generator, count: int) -> np.ndarray:
    vectors = rng.normal(size=(count, DIMENSIONS)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _state(vectors: np.ndarray, *, active: bool) -> tuple[TaggerState, list[int]]:
    state = TaggerState.objects.create(
        active=active, embedding_model="test-model", fitted_on={}, parameters={}, artifacts=b""
    )
    examples = TrainingExample.objects.bulk_create(
        [TrainingExample(state=state, row=row, embedding=vector) for row, vector in enumerate(vectors)]
    )
    return state, [example.pk for example in examples]


def _exact(vectors: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    return [int(i) for i in np.argsort(-(vectors @ query))[:k]]


def test_it_finds_the_exact_nearest_examples_best_first_with_their_similarity(settings: Any) -> None:
    rng = np.random.default_rng(7)
    vectors = _unit(rng, 300)
    state, ids = _state(vectors, active=True)
    query = _unit(rng, 1)[0]
    settings.NEIGHBOURS_EF_SEARCH = 400  # more candidates than examples: the walk reaches every one

    found = training_examples_nearest(state_id=state.pk, embedding=query, limit=10)

    assert [ids.index(example_id) for example_id, _ in found] == _exact(vectors, query, 10)
    similarities = [similarity for _, similarity in found]
    assert similarities == sorted(similarities, reverse=True)
    assert similarities[0] == pytest.approx(float(vectors[ids.index(found[0][0])] @ query), abs=1e-5)


def test_it_never_returns_examples_of_another_state(settings: Any) -> None:
    rng = np.random.default_rng(8)
    query = _unit(rng, 1)[0]
    # The other state's examples all lie next to the query: an index walk that stopped at ef_search
    # candidates would find only them, and the state filter would leave nothing.
    crowd = query + rng.normal(scale=0.01, size=(200, DIMENSIONS)).astype(np.float32)
    _state(crowd / np.linalg.norm(crowd, axis=1, keepdims=True), active=False)
    vectors = _unit(rng, 50)
    state, ids = _state(vectors, active=True)
    settings.NEIGHBOURS_EF_SEARCH = 40

    found = training_examples_nearest(state_id=state.pk, embedding=query, limit=25)

    assert len(found) == 25
    assert {example_id for example_id, _ in found} <= set(ids)


def test_a_batch_is_one_query_and_answers_as_one_recipe_at_a_time() -> None:
    rng = np.random.default_rng(9)
    state, ids = _state(_unit(rng, 200), active=True)
    queries = _unit(rng, 12)
    one_by_one = [training_examples_nearest(state_id=state.pk, embedding=q, limit=5) for q in queries]

    with CaptureQueriesContext(connection) as captured:
        batch = training_examples_nearest_many(state_id=state.pk, embeddings=queries, limit=5)

    assert [[i for i, _ in row] for row in batch] == [[i for i, _ in row] for row in one_by_one]
    assert len([q for q in captured.captured_queries if "LATERAL" in q["sql"]]) == 1
    neighbours = PgvectorNeighbours(state.pk, {example_id: row for row, example_id in enumerate(ids)})
    indices, sims = neighbours.nearest(queries, 5, exclude_self=False)
    assert indices.tolist() == [[ids.index(i) for i, _ in row] for row in one_by_one]
    assert sims[0, 0] == pytest.approx(one_by_one[0][0][1], abs=1e-6)
