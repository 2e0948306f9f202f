from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test.client import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tagging.models import Recipe, RunStatus, TaggingRun
from tagging.services.recipes import recipe_content_hash
from tagging.tests.conftest import RecipeFactory, TagAssignmentFactory, TaggingRunFactory
from taxonomy.tests.conftest import CategoryFactory, TagFactory

pytestmark = pytest.mark.django_db

RECIPE_CHANGELIST = reverse("admin:tagging_recipe_changelist")
RUN_CHANGELIST = reverse("admin:tagging_taggingrun_changelist")


def _run(recipe: Recipe, **fields: Any) -> TaggingRun:
    """A finished similarity run of `recipe`."""
    fields.setdefault("status", RunStatus.SUCCEEDED)
    fields.setdefault("embedding_model", "all-MiniLM-L6-v2")
    return TaggingRunFactory(recipe=recipe, **fields)


@pytest.fixture
def run() -> TaggingRun:
    cuisine = CategoryFactory(slug="cuisine")
    run = _run(RecipeFactory())
    TagAssignmentFactory(run=run, tag=TagFactory(category=cuisine, slug="french"), score=0.61, rank=2)
    TagAssignmentFactory(run=run, tag=TagFactory(category=cuisine, slug="italian"), score=0.93, rank=1)
    return run


def _admin_urls(run: TaggingRun) -> list[str]:
    return [
        RECIPE_CHANGELIST,
        reverse("admin:tagging_recipe_change", args=[run.recipe_id]),
        reverse("admin:tagging_recipe_add"),
        RUN_CHANGELIST,
        reverse("admin:tagging_taggingrun_change", args=[run.pk]),
    ]


def _recipe_form(recipe: Recipe, **changes: Any) -> dict[str, Any]:
    data = {
        "title": recipe.title,
        "ingredients": "\n".join(recipe.ingredients),
        "instructions": recipe.instructions,
        "external_id": recipe.external_id or "",
        "source": recipe.source,
        "_save": "Save",
    }
    return {**data, **changes}


# --- Access ---------------------------------------------------------------------------------------


def test_it_shows_recipes_and_runs_to_staff(staff_browser: Client, run: TaggingRun) -> None:
    responses = {url: staff_browser.get(url) for url in _admin_urls(run)}

    assert {url: r.status_code for url, r in responses.items()} == dict.fromkeys(responses, 200)
    assert b"Spaghetti carbonara" in responses[RECIPE_CHANGELIST].content
    assert b"Spaghetti carbonara" in responses[RUN_CHANGELIST].content


def test_it_sends_anonymous_users_to_the_admin_login(client: Client, run: TaggingRun) -> None:
    responses = [client.get(url) for url in _admin_urls(run)]

    assert [r.status_code for r in responses] == [302] * len(responses)
    assert all(r["Location"].startswith("/admin/login/") for r in responses)


def test_it_keeps_a_non_staff_user_out(client: Client, api_client_user: Any, run: TaggingRun) -> None:
    client.force_login(api_client_user)

    responses = [client.get(url) for url in _admin_urls(run)]

    assert [r.status_code for r in responses] == [302] * len(responses)
    assert all(r["Location"].startswith("/admin/login/") for r in responses)


# --- Runs ---------------------------------------------------------------------------------------


def test_it_does_not_let_staff_add_or_edit_runs(staff_browser: Client, run: TaggingRun) -> None:
    change_url = reverse("admin:tagging_taggingrun_change", args=[run.pk])

    add = staff_browser.get(reverse("admin:tagging_taggingrun_add"))
    edit = staff_browser.post(change_url, {"status": RunStatus.FAILED, "error": "edited", "_save": "Save"})
    changelist = staff_browser.get(RUN_CHANGELIST)

    assert (add.status_code, edit.status_code) == (403, 403)
    assert reverse("admin:tagging_taggingrun_add").encode() not in changelist.content
    run.refresh_from_db()
    assert (run.status, run.error) == (RunStatus.SUCCEEDED, "")


def test_it_shows_a_runs_tags_read_only_in_rank_order(staff_browser: Client, run: TaggingRun) -> None:
    response = staff_browser.get(reverse("admin:tagging_taggingrun_change", args=[run.pk]))

    (inline,) = response.context["inline_admin_formsets"]
    rows = [(form.original.tag.slug, form.original.score, form.original.rank) for form in inline]
    assert rows == [("italian", 0.93, 1), ("french", 0.61, 2)]
    assert (inline.has_add_permission, inline.has_change_permission, inline.has_delete_permission) == (
        False,
        False,
        False,
    )
    content = response.content.decode()
    assert "cuisine/italian" in content
    assert content.index("cuisine/italian") < content.index("cuisine/french")
    assert 'name="_save"' not in content


def test_it_lists_runs_in_a_fixed_number_of_queries(staff_browser: Client, run: TaggingRun) -> None:
    def changelist_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert staff_browser.get(RUN_CHANGELIST).status_code == 200
        return len(queries)

    with_one = changelist_queries()
    for index in range(5):
        _run(RecipeFactory(title=f"Recipe {index}"), status=RunStatus.FAILED)
    with_six = changelist_queries()

    assert with_six == with_one


# --- Recipes --------------------------------------------------------------------------------------


def test_it_rehashes_a_recipe_and_drops_its_embedding_when_staff_edit_its_text(
    staff_browser: Client,
) -> None:
    recipe = RecipeFactory(embedding=[0.1] * settings.EMBEDDING_DIMENSIONS, embedding_model="all-MiniLM-L6-v2")
    ingredients = "200 g spaghetti\n\n2 eggs, beaten\r\n100 g guanciale, diced\n"

    response = staff_browser.post(
        reverse("admin:tagging_recipe_change", args=[recipe.pk]), _recipe_form(recipe, ingredients=ingredients)
    )

    assert response.status_code == 302
    recipe.refresh_from_db()
    assert recipe.ingredients == ["200 g spaghetti", "2 eggs, beaten", "100 g guanciale, diced"]
    assert recipe.content_hash == recipe_content_hash(
        title="Spaghetti carbonara", ingredients=recipe.ingredients, instructions=""
    )
    assert (recipe.embedding, recipe.embedding_model) == (None, "")


def test_it_keeps_a_recipes_embedding_when_staff_change_only_its_source(staff_browser: Client) -> None:
    recipe = RecipeFactory(embedding=[0.1] * settings.EMBEDDING_DIMENSIONS, embedding_model="all-MiniLM-L6-v2")
    original_hash = recipe.content_hash

    response = staff_browser.post(
        reverse("admin:tagging_recipe_change", args=[recipe.pk]), _recipe_form(recipe, source="import")
    )

    assert response.status_code == 302
    recipe.refresh_from_db()
    assert (recipe.source, recipe.content_hash, recipe.embedding_model) == ("import", original_hash, "all-MiniLM-L6-v2")
    assert recipe.embedding is not None


def test_it_gives_a_recipe_staff_add_its_content_hash(staff_browser: Client) -> None:
    response = staff_browser.post(
        reverse("admin:tagging_recipe_add"),
        {
            "title": " Pad thai ",
            "ingredients": "rice noodles\ntamarind",
            "instructions": "Stir-fry.",
            "external_id": "",
            "source": "admin",
            "_save": "Save",
        },
    )

    assert response.status_code == 302
    recipe = Recipe.objects.get()
    assert (recipe.title, recipe.ingredients, recipe.external_id) == ("Pad thai", ["rice noodles", "tamarind"], None)
    assert recipe.content_hash == recipe_content_hash(
        title="Pad thai", ingredients=["rice noodles", "tamarind"], instructions="Stir-fry."
    )


def test_it_refuses_a_recipe_without_ingredients_or_instructions(staff_browser: Client) -> None:
    recipe = RecipeFactory()

    response = staff_browser.post(
        reverse("admin:tagging_recipe_change", args=[recipe.pk]), _recipe_form(recipe, ingredients="\n \n")
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    recipe.refresh_from_db()
    assert recipe.ingredients == ["spaghetti", "eggs", "guanciale"]


def test_it_finds_recipes_by_title_or_external_id(staff_browser: Client) -> None:
    RecipeFactory(title="Spaghetti carbonara", external_id="abc-1")
    RecipeFactory(title="Pad thai", external_id="xyz-9")

    by_title = staff_browser.get(RECIPE_CHANGELIST, {"q": "carbonara"})
    by_external_id = staff_browser.get(RECIPE_CHANGELIST, {"q": "xyz-9"})

    assert [r.title for r in by_title.context["cl"].result_list] == ["Spaghetti carbonara"]
    assert [r.title for r in by_external_id.context["cl"].result_list] == ["Pad thai"]


def test_it_refuses_to_delete_a_gold_labelled_recipe_and_keeps_its_labels(staff_browser: Client) -> None:
    from feedback.models import GoldLabel, GoldLabelSource

    recipe = RecipeFactory()
    GoldLabel.objects.create(recipe=recipe, tag=TagFactory(), source=GoldLabelSource.IMPORT)

    response = staff_browser.post(reverse("admin:tagging_recipe_delete", args=[recipe.pk]), {"post": "yes"})

    assert response.status_code == 200
    assert "<title>Cannot delete recipe | Django site admin</title>" in response.content.decode()
    assert Recipe.objects.filter(pk=recipe.pk).exists()
    assert GoldLabel.objects.filter(recipe=recipe).count() == 1


def test_it_shows_who_stored_a_recipe_without_letting_staff_change_it(
    staff_browser: Client, api_client_user: Any
) -> None:
    recipe = RecipeFactory(created_by=api_client_user)

    page = staff_browser.get(reverse("admin:tagging_recipe_change", args=[recipe.pk])).content.decode()

    assert 'name="created_by"' not in page
    assert api_client_user.username in page
