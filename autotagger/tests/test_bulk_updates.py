"""rows_update: many rows set to their own values in one statement, only where a condition holds."""

from __future__ import annotations

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from autotagger.bulk_updates import rows_update
from tagging.models import Recipe, RunStatus, TaggingRun
from tagging.tests.conftest import RecipeFactory

pytestmark = pytest.mark.django_db


def _vector(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=384).astype(np.float32)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def test_it_sets_each_row_to_its_own_values_in_one_statement() -> None:
    recipes = [RecipeFactory(title=f"Recipe {i}") for i in range(3)]
    untouched = RecipeFactory(title="Untouched")

    with CaptureQueriesContext(connection) as queries:
        updated = rows_update(
            model=Recipe,
            fields=["embedding", "embedding_model"],
            rows=[(r.pk, _vector(i), f"model-{i}") for i, r in enumerate(recipes)],
        )

    assert len(queries) == 1
    assert sorted(updated) == sorted(r.pk for r in recipes)
    for i, recipe in enumerate(recipes):
        recipe.refresh_from_db()
        assert recipe.embedding_model == f"model-{i}"
        np.testing.assert_allclose(np.asarray(recipe.embedding), _vector(i), rtol=1e-6)
    untouched.refresh_from_db()
    assert untouched.embedding is None


def test_it_updates_only_the_rows_that_meet_the_condition_and_returns_them() -> None:
    first, second, third = (RecipeFactory(title=f"Recipe {i}") for i in range(3))
    old, new = (
        TaggingRun.objects.create(recipe=first, status=RunStatus.SUCCEEDED, strategy="similarity") for _ in range(2)
    )
    moved_on = TaggingRun.objects.create(recipe=second, status=RunStatus.SUCCEEDED, strategy="similarity")
    second_new = TaggingRun.objects.create(recipe=second, status=RunStatus.SUCCEEDED, strategy="similarity")
    third_new = TaggingRun.objects.create(recipe=third, status=RunStatus.SUCCEEDED, strategy="similarity")
    Recipe.objects.filter(pk=first.pk).update(current_run=old)
    Recipe.objects.filter(pk=second.pk).update(current_run=moved_on)

    updated = rows_update(
        model=Recipe,
        fields=["current_run"],
        keys=[("before", "bigint")],
        rows=[(first.pk, old.pk, new.pk), (second.pk, None, second_new.pk), (third.pk, None, third_new.pk)],
        condition="t.current_run_id IS NOT DISTINCT FROM v.before",
    )

    assert sorted(updated) == sorted([first.pk, third.pk])
    assert dict(Recipe.objects.filter(pk__in=[first.pk, second.pk, third.pk]).values_list("id", "current_run_id")) == {
        first.pk: new.pk,
        second.pk: moved_on.pk,
        third.pk: third_new.pk,
    }


def test_it_does_nothing_for_no_rows() -> None:
    with CaptureQueriesContext(connection) as queries:
        assert rows_update(model=Recipe, fields=["embedding_model"], rows=[]) == []

    assert len(queries) == 0
