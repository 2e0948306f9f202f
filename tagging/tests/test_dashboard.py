from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tagging.dispatch import recipes_tag_job
from tagging.models import Recipe, TaggingRun
from tagging.services.config import TaggingConfig
from tagging.services.recipes import recipe_create

pytestmark = pytest.mark.django_db


def _carbonara(demo_recipes: list[dict[str, Any]]) -> dict[str, Any]:
    recipe = next(r for r in demo_recipes if r["title"] == "Spaghetti Carbonara")
    return {
        "title": recipe["title"],
        "ingredients": "\n".join(recipe["ingredients"]),
        "instructions": recipe["instructions"],
        "strategy": "similarity",
        "k": "",
    }


def test_it_sends_an_anonymous_visitor_to_the_login_page(client: Client) -> None:
    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/"


def test_it_renders_the_login_page_with_a_form(client: Client) -> None:
    response = client.get("/accounts/login/?next=/")

    assert response.status_code == 200
    content = response.content.decode()
    assert 'name="username"' in content
    assert 'name="password"' in content
    assert '<input type="hidden" name="next" value="/">' in content


def test_it_shows_an_error_for_wrong_credentials(client: Client, staff: Any) -> None:
    response = client.post("/accounts/login/", {"username": "staff", "password": "wrong", "next": "/"})

    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()


def test_it_lands_on_the_dashboard_after_logging_in(client: Client, staff: Any, taxonomy: Any) -> None:
    response = client.post(
        "/accounts/login/", {"username": "staff", "password": "staff-password", "next": "/"}, follow=True
    )

    assert response.redirect_chain == [("/", 302)]
    content = response.content.decode()
    assert "Tag a recipe" in content
    assert "Spaghetti Carbonara" in content  # the "Try an example" data
    assert 'action="/accounts/logout/"' in content


def test_it_tags_the_carbonara_and_redirects_to_the_run_page(
    staff_browser: Client, taxonomy: Any, demo_recipes: list[dict[str, Any]]
) -> None:
    response = staff_browser.post("/", _carbonara(demo_recipes))

    run = TaggingRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/runs/{run.pk}/"
    assert run.status == "succeeded"
    assert run.recipe.ingredients[0] == "200 g spaghetti"
    page = staff_browser.get(response["Location"]).content.decode()
    assert "<h1>Spaghetti Carbonara</h1>" in page
    assert '<span class="tag-name">Italian</span>' in page
    assert 'class="score-bar" style="width: ' in page


def test_the_run_page_shows_why_each_tag_was_chosen(
    staff_browser: Client, taxonomy: Any, demo_recipes: list[dict[str, Any]]
) -> None:
    staff_browser.post("/", _carbonara(demo_recipes))
    run = TaggingRun.objects.get()
    pasta = run.assignments.get(tag__category__slug="dish_type", tag__slug="pasta")

    page = staff_browser.get(f"/runs/{run.pk}/").content.decode()

    assert page.count('<details class="evidence">') == run.assignments.count()
    assert page.count("<summary>Why: zero-shot similarity</summary>") == run.assignments.count()
    assert '<dt>Words</dt><dd>spaghetti <span class="muted">(title)</span>' in page
    assert pasta.evidence["matched"]["title"] == ["spaghetti"]
    assert "<dt>Similarity</dt><dd>0." in page
    assert "<dt>Rule</dt>" in page


def test_it_shows_every_configured_category_even_without_tags(
    staff_browser: Client, taxonomy: Any, demo_recipes: list[dict[str, Any]]
) -> None:
    data = {**_carbonara(demo_recipes), "categories": ["cuisine", "occasion"]}

    response = staff_browser.post("/", data, follow=True)

    content = response.content.decode()
    assert ">Cuisine</h3>" in content
    assert ">Occasion</h3>" in content
    assert ">Diet</h3>" not in content


def test_it_shows_that_llm_needs_settings_and_stores_nothing_when_none_are_set(
    staff_browser: Client, taxonomy: Any, demo_recipes: list[dict[str, Any]]
) -> None:
    response = staff_browser.post("/", {**_carbonara(demo_recipes), "strategy": "llm"})

    content = response.content.decode()
    assert response.status_code == 400
    assert "needs a language model" in content
    assert "LLM_BASE_URL" in content
    assert 'value="Spaghetti Carbonara"' in content
    assert Recipe.objects.count() == 0


def test_it_rejects_an_unknown_strategy_and_stores_nothing(
    staff_browser: Client, taxonomy: Any, demo_recipes: list[dict[str, Any]]
) -> None:
    response = staff_browser.post("/", {**_carbonara(demo_recipes), "strategy": "magic"})

    assert response.status_code == 200
    assert "Select a valid choice. magic is not one of the available choices." in response.content.decode()
    assert Recipe.objects.count() == 0


def test_it_shows_a_form_error_for_an_empty_title(
    staff_browser: Client, taxonomy: Any, demo_recipes: list[dict[str, Any]]
) -> None:
    response = staff_browser.post("/", {**_carbonara(demo_recipes), "title": ""})

    content = response.content.decode()
    assert '<ul class="errorlist" id="id_title_error"><li>This field is required.</li></ul>' in content
    assert Recipe.objects.count() == 0


def test_it_rejects_k_above_twenty(staff_browser: Client, taxonomy: Any, demo_recipes: list[dict[str, Any]]) -> None:
    response = staff_browser.post("/", {**_carbonara(demo_recipes), "k": "21"})

    assert "Ensure this value is less than or equal to 20." in response.content.decode()
    assert Recipe.objects.count() == 0


def test_it_answers_404_for_an_unknown_run(staff_browser: Client) -> None:
    response = staff_browser.get("/runs/999999/")

    assert response.status_code == 404


def test_it_links_to_the_run_from_the_recent_runs_list(
    staff_browser: Client, taxonomy: Any, demo_recipes: list[dict[str, Any]]
) -> None:
    staff_browser.post("/", _carbonara(demo_recipes))
    run = TaggingRun.objects.get()

    content = staff_browser.get("/").content.decode()

    assert f'<a href="/runs/{run.pk}/">Spaghetti Carbonara</a>' in content
    assert f'<a href="/runs/{run.pk}/">#{run.pk}</a>' in content
    assert f'<td class="num">{run.assignments.count()}</td>' in content


def test_it_lists_recent_runs_without_a_query_per_run(
    staff_browser: Client, taxonomy: Any, demo_recipes: list[dict[str, Any]], django_assert_num_queries: Any
) -> None:
    for recipe in demo_recipes[:4]:
        staff_browser.post("/", {**_carbonara(demo_recipes), "title": recipe["title"]})

    # 6 for the page, 2 for the re-tagging panel a superuser may see (jobs running, jobs ended; none here).
    with django_assert_num_queries(8):
        content = staff_browser.get("/").content.decode()

    assert content.count('<span class="badge badge-succeeded">') == 4


def test_it_shows_batch_jobs_with_their_progress(staff_browser: Client, staff: Any, taxonomy: Any) -> None:
    recipes = [recipe_create(title=f"Toast {i}", ingredients=["bread"], instructions="") for i in range(2)]
    job = recipes_tag_job(recipe_ids=[r.pk for r in recipes], filters=None, config=TaggingConfig(), user=staff)

    content = staff_browser.get("/").content.decode()

    assert f"Job #{job.pk}" in content
    assert "0 done · 0 failed · 2 total" in content
    assert f'data-job-url="/api/v1/jobs/{job.pk}"' in content


def _tag_as(client: Client, user: Any, title: str, demo_recipes: list[dict[str, Any]]) -> TaggingRun:
    client.force_login(user)
    client.post("/", {**_carbonara(demo_recipes), "title": title})
    return TaggingRun.objects.get(recipe__title=title)


def test_a_signed_in_user_sees_only_their_own_runs_and_jobs(
    client: Client, api_client_user: Any, django_user_model: Any, taxonomy: Any, demo_recipes: list[dict[str, Any]]
) -> None:
    other = django_user_model.objects.create_user(username="other")
    _tag_as(client, other, "Other's carbonara", demo_recipes)
    other_job = recipes_tag_job(
        recipe_ids=[Recipe.objects.get(title="Other's carbonara").pk], filters=None, config=TaggingConfig(), user=other
    )
    mine = _tag_as(client, api_client_user, "My carbonara", demo_recipes)

    content = client.get("/").content.decode()

    assert f'<a href="/runs/{mine.pk}/">My carbonara</a>' in content
    assert "Other's carbonara" not in content
    assert f"Job #{other_job.pk}" not in content


def test_a_reviewer_sees_everyones_recent_runs(
    client: Client, api_client_user: Any, reviewer: Any, taxonomy: Any, demo_recipes: list[dict[str, Any]]
) -> None:
    _tag_as(client, api_client_user, "My carbonara", demo_recipes)
    client.force_login(reviewer)

    content = client.get("/").content.decode()

    assert "My carbonara" in content


def test_the_page_of_someone_elses_run_is_404(
    client: Client, api_client_user: Any, django_user_model: Any, taxonomy: Any, demo_recipes: list[dict[str, Any]]
) -> None:
    run = _tag_as(client, api_client_user, "My carbonara", demo_recipes)
    client.force_login(django_user_model.objects.create_user(username="other"))

    response = client.get(f"/runs/{run.pk}/")

    assert response.status_code == 404
