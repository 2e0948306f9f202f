"""Fast mode (`"embedding": "fast"`): tagging with the distilled static model, per request and per job, without
ever replacing a recipe's full-model vector."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.conf import settings
from rest_framework.test import APIClient

from autotagger.embeddings import EmbeddingMode, embedding_model_name
from conftest import assert_error
from tagging.models import Recipe, RunStatus, TaggingRun
from tagging.services.config import TaggingConfig
from tagging.services.runs import recipe_tag, recipes_tag_bulk, run_execute
from tagging.tests.conftest import demo_recipe
from tagging.tests.helpers import tags_stored
from taxonomy.models import Tag, TagEmbedding

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("taxonomy")]

TAG = "/api/v1/tag"
JOBS = "/api/v1/recipes/tag"
FAST_MODEL = f"{settings.EMBEDDING_MODEL}/model2vec"


def _payload(demo_recipes: list[dict[str, Any]], title: str, **options: Any) -> dict[str, Any]:
    recipe = next(r for r in demo_recipes if r["title"] == title)
    return {"title": title, "ingredients": recipe["ingredients"], "instructions": recipe["instructions"], **options}


def test_a_fast_request_returns_tags_and_records_the_fast_model_in_the_run(
    fast_mode: Path, token_client: APIClient, demo_recipes: list[dict[str, Any]]
) -> None:
    response = token_client.post(TAG, _payload(demo_recipes, "Beef Tacos", embedding="fast"), format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "succeeded"
    assert body["model"] == FAST_MODEL
    assert sum(len(group["tags"]) for group in body["categories"]) > 0
    run = TaggingRun.objects.get(pk=body["id"])
    assert run.embedding_model == FAST_MODEL
    assert run.config["embedding"] == "fast"


def test_a_fast_request_never_stores_a_fast_vector_on_the_recipe(
    fast_mode: Path, demo_recipes: list[dict[str, Any]]
) -> None:
    tacos = demo_recipe(demo_recipes, "Beef Tacos")
    recipe_tag(recipe=tacos, config=TaggingConfig())
    full_vector = np.asarray(Recipe.objects.get(pk=tacos.pk).embedding)

    run = recipe_tag(recipe=tacos, config=TaggingConfig(embedding="fast"))

    stored = Recipe.objects.get(pk=tacos.pk)
    assert run.embedding_model == FAST_MODEL
    assert stored.embedding_model == settings.EMBEDDING_MODEL
    assert np.array_equal(np.asarray(stored.embedding), full_vector)


def test_tags_get_fast_vectors_beside_their_full_ones(fast_mode: Path, demo_recipes: list[dict[str, Any]]) -> None:
    before = {t.pk: (t.embedding_model, np.asarray(t.embedding)) for t in Tag.objects.filter(active=True)}

    recipe_tag(recipe=demo_recipe(demo_recipes, "Greek Salad"), config=TaggingConfig(embedding="fast"))

    after = {t.pk: (t.embedding_model, np.asarray(t.embedding)) for t in Tag.objects.filter(active=True)}
    assert all(after[pk][0] == before[pk][0] and np.array_equal(after[pk][1], before[pk][1]) for pk in before)
    fast = TagEmbedding.objects.filter(model=FAST_MODEL)
    assert set(fast.values_list("tag_id", flat=True)) == set(before)


def test_fast_mode_when_not_distilled_is_a_400_naming_the_command(
    no_fast_mode: Path, token_client: APIClient, demo_recipes: list[dict[str, Any]]
) -> None:
    response = token_client.post(TAG, _payload(demo_recipes, "Beef Tacos", embedding="fast"), format="json")

    error = assert_error(response, status=400, code="fast_mode_unavailable")
    assert "manage.py embedding_distill" in error["message"]
    assert not TaggingRun.objects.exists()


def test_an_unknown_embedding_is_a_400_naming_the_field(
    token_client: APIClient, demo_recipes: list[dict[str, Any]]
) -> None:
    response = token_client.post(TAG, _payload(demo_recipes, "Beef Tacos", embedding="turbo"), format="json")

    error = assert_error(response, status=400, code="invalid")
    assert "embedding" in str(error)


def test_fast_mode_is_refused_for_the_llm_strategies(fast_mode: Path, demo_recipes: list[dict[str, Any]]) -> None:
    from tagging.services.config import InvalidTaggingConfig, tagging_config_validate

    with pytest.raises(InvalidTaggingConfig, match="similarity strategy only"):
        tagging_config_validate(config=TaggingConfig(strategy="llm", embedding="fast", source=None))


def test_a_fast_job_queues_runs_of_the_fast_model_that_the_worker_tags_with_it(
    fast_mode: Path, token_client: APIClient, demo_recipes: list[dict[str, Any]], api_client_user: Any
) -> None:
    recipes = [demo_recipe(demo_recipes, t, created_by=api_client_user) for t in ("Beef Tacos", "Miso Ramen")]

    response = token_client.post(
        JOBS, {"recipe_ids": [r.pk for r in recipes], "embedding": "fast", "k": 2}, format="json"
    )

    assert response.status_code == 202, response.content
    runs = list(TaggingRun.objects.filter(job_id=response.json()["id"]).order_by("id"))
    assert [run.embedding_model for run in runs] == [FAST_MODEL, FAST_MODEL]
    # What the worker's task does with each run.
    done = [run_execute(run_id=run.pk) for run in runs]
    assert [run.status for run in done] == [RunStatus.SUCCEEDED, RunStatus.SUCCEEDED]
    assert [run.embedding_model for run in done] == [FAST_MODEL, FAST_MODEL]
    assert all(tags_stored(run) for run in done)
    assert Recipe.objects.filter(pk__in=[r.pk for r in recipes], embedding_model=FAST_MODEL).count() == 0


def test_bulk_tagging_in_fast_mode_matches_tagging_one_by_one(
    fast_mode: Path, demo_recipes: list[dict[str, Any]]
) -> None:
    recipes = [demo_recipe(demo_recipes, t) for t in ("Beef Tacos", "Miso Ramen", "Greek Salad")]
    config = TaggingConfig(embedding="fast", k=2)

    bulk = recipes_tag_bulk(recipes=recipes, config=config, sets_current=False)
    one_by_one = [recipe_tag(recipe=r, config=config, sets_current=False) for r in recipes]

    assert [run.embedding_model for run in bulk] == [embedding_model_name(mode=EmbeddingMode.FAST)] * 3
    assert [tags_stored(run) for run in bulk] == [tags_stored(run) for run in one_by_one]
