"""API clients see and change only their own recipes, runs and jobs (anyone else's are 404), and a
gold-labelled recipe is changed only by staff and reviewers; deleting one never takes its labels with it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db.models import ProtectedError
from rest_framework.test import APIClient

from conftest import assert_error
from feedback.models import GoldLabel, GoldLabelSource
from tagging.models import Recipe, RunStatus, Strategy, TagAssignment, TaggingJob, TaggingRun
from tagging.services.config import TaggingConfig
from tagging.services.recipes import recipe_create
from tagging.services.runs import recipe_tag
from taxonomy.models import Tag

pytestmark = pytest.mark.django_db


@pytest.fixture
def client_b(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user(username="client-b", password="client-b-password")


@pytest.fixture
def b_client(client_b: Any, api_client_for: Callable[[Any], APIClient]) -> APIClient:
    """Client B calling the API with its own token."""
    return api_client_for(client_b)


@pytest.fixture
def a_recipe(api_client_user: Any) -> Recipe:
    """A recipe of client A (the user behind `token_client`)."""
    return recipe_create(title="A's stew", ingredients=["beans"], instructions="Simmer.", created_by=api_client_user)


@pytest.fixture
def gold_recipe(api_client_user: Any, taxonomy: dict[str, Any]) -> Recipe:
    """A recipe of client A that staff gave gold labels."""
    recipe = recipe_create(title="A's tacos", ingredients=["tortillas"], instructions="", created_by=api_client_user)
    for slug in ("mexican", "main-course"):
        GoldLabel.objects.create(recipe=recipe, tag=Tag.objects.get(slug=slug), source=GoldLabelSource.IMPORT)
    return recipe


def _curator(django_user_model: Any, *codenames: str) -> Any:
    user = django_user_model.objects.create_user(username="curator", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="tagging", codename__in=codenames))
    return user


def _labels(recipe: Recipe) -> list[tuple[str, str]]:
    return list(GoldLabel.objects.filter(recipe=recipe).order_by("tag__slug").values_list("tag__slug", "source"))


# --- Another client's objects are 404 -------------------------------------------------------------


def test_client_b_cannot_read_change_or_delete_client_as_recipe(b_client: APIClient, a_recipe: Recipe) -> None:
    url = f"/api/v1/recipes/{a_recipe.pk}"

    responses = [
        b_client.get(url),
        b_client.patch(url, {"title": "Mine now"}, format="json"),
        b_client.put(url, {"title": "Mine now", "ingredients": ["salt"]}, format="json"),
        b_client.delete(url),
    ]

    for response in responses:
        assert_error(response, status=404, code="not_found")
    a_recipe.refresh_from_db()
    assert (a_recipe.title, a_recipe.ingredients) == ("A's stew", ["beans"])


def test_client_b_does_not_find_client_as_recipe_in_the_list_even_by_tag(
    b_client: APIClient, token_client: APIClient, taxonomy: dict[str, Any], a_recipe: Recipe
) -> None:
    recipe_tag(recipe=a_recipe, config=TaggingConfig(categories=("cuisine",), k=1))
    tag = TagAssignment.objects.filter(run__recipe=a_recipe).values_list("tag__slug", flat=True).first()

    as_b = [b_client.get("/api/v1/recipes"), b_client.get("/api/v1/recipes", {"tag": tag})]
    as_a = token_client.get("/api/v1/recipes", {"tag": tag})

    assert [r.json()["count"] for r in as_b] == [0, 0]
    assert [r["id"] for r in as_a.json()["results"]] == [a_recipe.pk]


def test_client_b_cannot_read_client_as_run_or_job(
    b_client: APIClient, token_client: APIClient, api_client_user: Any, a_recipe: Recipe
) -> None:
    job = TaggingJob.objects.create(strategy=Strategy.SIMILARITY, total=1, created_by=api_client_user)
    run = TaggingRun.objects.create(
        recipe=a_recipe, job=job, strategy=Strategy.SIMILARITY, status=RunStatus.SUCCEEDED, created_by=api_client_user
    )

    assert_error(b_client.get(f"/api/v1/runs/{run.pk}"), status=404, code="not_found")
    assert_error(b_client.get(f"/api/v1/jobs/{job.pk}"), status=404, code="not_found")
    assert token_client.get(f"/api/v1/runs/{run.pk}").status_code == 200
    assert token_client.get(f"/api/v1/jobs/{job.pk}").status_code == 200


def test_a_client_reads_the_runs_staff_made_of_its_recipe(
    token_client: APIClient, staff: Any, a_recipe: Recipe
) -> None:
    run = TaggingRun.objects.create(
        recipe=a_recipe, strategy=Strategy.SIMILARITY, status=RunStatus.SUCCEEDED, created_by=staff
    )

    response = token_client.get(f"/api/v1/runs/{run.pk}")

    assert response.status_code == 200
    assert response.json()["recipe_id"] == a_recipe.pk


def test_client_b_cannot_tag_client_as_recipe_nor_put_it_in_a_job(
    b_client: APIClient, taxonomy: dict[str, Any], a_recipe: Recipe
) -> None:
    one = b_client.post(f"/api/v1/recipes/{a_recipe.pk}/tag", {}, format="json")
    job = b_client.post("/api/v1/recipes/tag", {"recipe_ids": [a_recipe.pk]}, format="json")
    by_filter = b_client.post("/api/v1/recipes/tag", {"filter": {"source": "api"}}, format="json")

    assert_error(one, status=404, code="not_found")
    assert assert_error(job, status=400, code="invalid_job")["details"] == {"recipe_ids": [a_recipe.pk]}
    assert_error(by_filter, status=400, code="invalid_job")
    assert not TaggingRun.objects.exists()
    assert not TaggingJob.objects.exists()


def test_a_reviewer_reads_client_as_recipe_but_cannot_change_it(
    reviewer: Any, api_client_for: Callable[[Any], APIClient], a_recipe: Recipe
) -> None:
    client = api_client_for(reviewer)
    url = f"/api/v1/recipes/{a_recipe.pk}"

    read = client.get(url)
    change = client.patch(url, {"title": "Reviewed"}, format="json")
    delete = client.delete(url)

    assert read.status_code == 200
    assert_error(change, status=403, code="permission_denied")
    assert_error(delete, status=403, code="permission_denied")
    assert Recipe.objects.get(pk=a_recipe.pk).title == "A's stew"


# --- Recipes are owned by whoever stored them through the API -------------------------------------


def test_the_recipes_a_client_stores_are_its_own(
    token_client: APIClient, api_client_user: Any, taxonomy: dict[str, Any]
) -> None:
    created = token_client.post("/api/v1/recipes", {"title": "Toast", "ingredients": ["bread"]}, format="json")
    tagged = token_client.post("/api/v1/tag", {"title": "Jam toast", "ingredients": ["bread", "jam"]}, format="json")

    assert Recipe.objects.get(pk=created.json()["id"]).created_by == api_client_user
    assert Recipe.objects.get(pk=tagged.json()["recipe_id"]).created_by == api_client_user


# --- Gold-labelled recipes ------------------------------------------------------------------------


def test_a_client_cannot_change_its_own_gold_labelled_recipe(token_client: APIClient, gold_recipe: Recipe) -> None:
    labels = _labels(gold_recipe)

    response = token_client.patch(f"/api/v1/recipes/{gold_recipe.pk}", {"title": "Fish tacos"}, format="json")

    error = assert_error(response, status=403, code="recipe_gold_labelled")
    assert error["details"] == {"recipe_id": gold_recipe.pk}
    gold_recipe.refresh_from_db()
    assert gold_recipe.title == "A's tacos"
    assert _labels(gold_recipe) == labels


def test_deleting_a_gold_labelled_recipe_keeps_the_recipe_and_its_labels(
    token_client: APIClient,
    api_client_for: Callable[[Any], APIClient],
    django_user_model: Any,
    gold_recipe: Recipe,
) -> None:
    curator = api_client_for(_curator(django_user_model, "view_recipe", "delete_recipe"))
    labels = _labels(gold_recipe)

    as_owner = token_client.delete(f"/api/v1/recipes/{gold_recipe.pk}")
    as_curator = curator.delete(f"/api/v1/recipes/{gold_recipe.pk}")

    assert_error(as_owner, status=403, code="recipe_gold_labelled")
    assert_error(as_curator, status=409, code="recipe_has_gold_labels")
    assert Recipe.objects.filter(pk=gold_recipe.pk).exists()
    assert _labels(gold_recipe) == labels == [("main-course", "import"), ("mexican", "import")]


def test_the_database_refuses_to_delete_a_recipe_with_gold_labels(gold_recipe: Recipe) -> None:
    with pytest.raises(ProtectedError):
        Recipe.objects.filter(pk=gold_recipe.pk).delete()

    assert GoldLabel.objects.filter(recipe=gold_recipe).count() == 2


def test_staff_with_the_change_permission_change_a_gold_labelled_recipe(
    api_client_for: Callable[[Any], APIClient], django_user_model: Any, gold_recipe: Recipe
) -> None:
    curator = api_client_for(_curator(django_user_model, "view_recipe", "change_recipe"))

    response = curator.patch(f"/api/v1/recipes/{gold_recipe.pk}", {"title": "Beef tacos"}, format="json")

    assert response.status_code == 200, response.content
    assert Recipe.objects.get(pk=gold_recipe.pk).title == "Beef tacos"
    assert len(_labels(gold_recipe)) == 2


def test_a_reviewer_changes_a_gold_labelled_recipe_of_its_own(
    reviewer: Any, api_client_for: Callable[[Any], APIClient], taxonomy: dict[str, Any]
) -> None:
    recipe = recipe_create(title="Tacos", ingredients=["tortillas"], instructions="", created_by=reviewer)
    GoldLabel.objects.create(recipe=recipe, tag=Tag.objects.get(slug="mexican"), source=GoldLabelSource.REVIEW)

    response = api_client_for(reviewer).patch(f"/api/v1/recipes/{recipe.pk}", {"title": "Fish tacos"}, format="json")

    assert response.status_code == 200, response.content
    assert Recipe.objects.get(pk=recipe.pk).title == "Fish tacos"
