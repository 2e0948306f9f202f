"""POST /api/v1/recipes/import: recipes (and their tags as gold labels) in, as JSON or JSON lines."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema
from pytest_django import Settings
from rest_framework.test import APIClient

from autotagger.permissions import IMPORT_PERMISSIONS
from conftest import assert_error
from feedback.models import GoldLabel, GoldLabelSource
from tagging.models import Recipe
from taxonomy.models import Category

URL = "/api/v1/recipes/import"

pytestmark = pytest.mark.django_db


def _recipe(external_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": external_id,
        "title": f"Recipe {external_id}",
        "ingredients": ["200 g spaghetti"],
        "instructions": "Boil.",
        **fields,
    }


def _jsonl(*recipes: dict[str, Any] | str) -> bytes:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in recipes).encode() + b"\n"


def test_a_json_object_imports_its_recipes_with_its_options_and_answers_with_the_report(
    staff_client: APIClient, staff: Any, cuisine: Category
) -> None:
    body = {
        "recipes": [
            _recipe("1", tags={"cuisine": ["Tex-Mex"]}),
            _recipe("2", tags={"cuisine": ["Italian"], "occasion": ["Picnic"]}),
            {"id": "3", "title": "Nothing to cook"},
        ],
        "labeled": True,
        "source": "catalogue",
        "map": {"cuisine": {"Tex-Mex": "mexican"}},
    }

    response = staff_client.post(URL, body, format="json")

    assert response.status_code == 200, response.content
    assert response.json() == {
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "labels": 2,
        "categories_created": 0,
        "tags_created": 0,
        "errors": [{"line": 3, "message": "the recipe has no ingredients and no instructions"}],
        "unmapped": {"occasion": {"Picnic": 1}},
    }
    assert sorted(Recipe.objects.values_list("source", "external_id")) == [("catalogue", "1"), ("catalogue", "2")]
    assert set(GoldLabel.objects.values_list("recipe__external_id", "tag__slug", "source", "created_by")) == {
        ("1", "mexican", GoldLabelSource.IMPORT, staff.pk),
        ("2", "italian", GoldLabelSource.IMPORT, staff.pk),
    }


def test_a_bare_json_array_takes_its_options_from_the_query_string(staff_client: APIClient, cuisine: Category) -> None:
    recipes = [_recipe("1", tags={"main_ingredient": ["Beef"]})]

    response = staff_client.post(f"{URL}?labeled=true&create_taxonomy=true&source=feed", recipes, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["created"], body["labels"], body["categories_created"], body["tags_created"]) == (1, 1, 1, 1)
    assert list(Recipe.objects.values_list("source", flat=True)) == ["feed"]
    assert list(GoldLabel.objects.values_list("tag__category__slug", "tag__slug")) == [("main_ingredient", "beef")]


@pytest.mark.parametrize("content_type", ["application/x-ndjson", "application/jsonl"])
def test_json_lines_are_imported_line_by_line(staff_client: APIClient, cuisine: Category, content_type: str) -> None:
    body = _jsonl(_recipe("1", tags={"cuisine": ["Italian"]}), "{oops", "", _recipe("4"))

    response = staff_client.post(f"{URL}?labeled=true", body, content_type=content_type)

    assert response.status_code == 200, response.content
    data = response.json()
    assert (data["created"], data["labels"]) == (2, 1)
    assert data["errors"] == [
        {"line": 2, "message": "invalid JSON: Expecting property name enclosed in double quotes (column 2)"}
    ]
    assert sorted(Recipe.objects.values_list("external_id", flat=True)) == ["1", "4"]


def test_importing_the_same_recipes_again_updates_them_instead_of_adding_copies(
    staff_client: APIClient, cuisine: Category
) -> None:
    staff_client.post(URL, {"recipes": [_recipe("1"), _recipe("2")]}, format="json")

    response = staff_client.post(URL, {"recipes": [_recipe("1"), _recipe("2", title="Renamed")]}, format="json")

    body = response.json()
    assert (body["created"], body["updated"], body["unchanged"]) == (0, 1, 1)
    assert Recipe.objects.count() == 2


def test_a_body_over_the_import_limit_is_refused_with_413(
    staff_client: APIClient, cuisine: Category, settings: Settings
) -> None:
    settings.AUTOTAGGER_IMPORT_MAX_BYTES = 1000
    recipes = [_recipe(str(n)) for n in range(30)]

    as_json = staff_client.post(URL, {"recipes": recipes}, format="json")
    as_lines = staff_client.post(URL, _jsonl(*recipes), content_type="application/x-ndjson")

    error = assert_error(as_json, status=413, code="payload_too_large")
    assert "the import limit is 1000 bytes" in error["message"]
    assert_error(as_lines, status=413, code="payload_too_large")
    assert Recipe.objects.count() == 0


def test_a_body_over_the_apis_usual_limit_but_under_the_import_limit_is_accepted(
    staff_client: APIClient, cuisine: Category, settings: Settings
) -> None:
    recipes = [_recipe(str(n), instructions="Stir. " * 100) for n in range(300)]
    body = json.dumps({"recipes": recipes}).encode()
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE < len(body) < 5 * 1024 * 1024

    response = staff_client.post(URL, body, content_type="application/json")

    assert response.status_code == 200, response.content
    assert response.json()["created"] == 300


def test_a_mapping_naming_a_missing_tag_is_refused_and_nothing_is_stored(
    staff_client: APIClient, cuisine: Category
) -> None:
    body = {"recipes": [_recipe("1")], "labeled": True, "map": {"cuisine": {"Tex-Mex": "texmex"}}}

    response = staff_client.post(URL, body, format="json")

    error = assert_error(response, status=400, code="invalid_import_config")
    assert "'cuisine/texmex' is no existing tag" in error["message"]
    assert Recipe.objects.count() == 0


def test_options_of_the_wrong_type_are_refused(staff_client: APIClient) -> None:
    response = staff_client.post(URL, {"recipes": [_recipe("1")], "labeled": "yes"}, format="json")

    error = assert_error(response, status=400, code="invalid")
    assert error["message"] == "labeled: Must be true or false, not str."
    assert Recipe.objects.count() == 0


def test_malformed_json_is_refused(staff_client: APIClient) -> None:
    response = staff_client.post(URL, b'{"recipes": [', content_type="application/json")

    error = assert_error(response, status=400, code="parse_error")
    assert error["message"].startswith("JSON parse error - ")


def test_a_body_that_is_neither_json_nor_json_lines_is_refused_with_415(staff_client: APIClient) -> None:
    response = staff_client.post(URL, "id,title\n1,Soup\n", content_type="text/csv")

    assert_error(response, status=415, code="unsupported_media_type")


def _user_with(django_user_model: Any, *perms: str, is_staff: bool = False) -> Any:
    user = django_user_model.objects.create_user(username="importer", is_staff=is_staff)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return user


def test_a_client_without_the_import_permissions_may_not_import(token_client: APIClient) -> None:
    response = token_client.post(URL, [_recipe("1")], format="json")

    assert_error(response, status=403, code="permission_denied")
    assert Recipe.objects.count() == 0


def test_being_staff_is_not_enough_to_import(
    django_user_model: Any, api_client_for: Callable[[Any], APIClient]
) -> None:
    client = api_client_for(_user_with(django_user_model, is_staff=True))

    response = client.post(URL, [_recipe("1")], format="json")

    assert_error(response, status=403, code="permission_denied")
    assert Recipe.objects.count() == 0


def test_the_admin_imports_permissions_are_enough_to_import_without_being_staff(
    django_user_model: Any, api_client_for: Callable[[Any], APIClient], cuisine: Category
) -> None:
    client = api_client_for(_user_with(django_user_model, *IMPORT_PERMISSIONS))

    response = client.post(
        URL, {"recipes": [_recipe("1", tags={"cuisine": ["Italian"]})], "labeled": True}, format="json"
    )

    assert response.status_code == 200, response.content
    assert (response.json()["created"], response.json()["labels"]) == (1, 1)


def test_creating_taxonomy_in_an_import_needs_the_taxonomy_permissions_too(
    django_user_model: Any, api_client_for: Callable[[Any], APIClient], cuisine: Category
) -> None:
    client = api_client_for(_user_with(django_user_model, *IMPORT_PERMISSIONS))
    body = {"recipes": [_recipe("1", tags={"occasion": ["Picnic"]})], "labeled": True, "create_taxonomy": True}

    response = client.post(URL, body, format="json")

    assert_error(response, status=403, code="permission_denied")
    assert Recipe.objects.count() == 0
    assert not Category.objects.filter(slug="occasion").exists()


def test_anonymous_visitors_must_authenticate(anonymous: APIClient) -> None:
    response = anonymous.post(URL, [_recipe("1")], format="json")

    assert_error(response, status=401, code="not_authenticated")


def test_the_endpoint_is_documented_without_warnings() -> None:
    GENERATOR_STATS.reset()
    generator = SchemaGenerator()
    document = generator.get_schema(request=None, public=True)
    problems = {"warnings": dict(GENERATOR_STATS._warn_cache), "errors": dict(GENERATOR_STATS._error_cache)}
    GENERATOR_STATS.reset()

    validate_schema(document)
    operation = document["paths"][URL]["post"]
    assert problems == {"warnings": {}, "errors": {}}
    assert set(operation["requestBody"]["content"]) == {"application/json", "application/x-ndjson", "application/jsonl"}
    assert set(operation["responses"]) == {"200", "400", "401", "403", "406", "413", "415", "429", "503"}
    assert {
        response["content"]["application/json"]["schema"]["$ref"]
        for code, response in operation["responses"].items()
        if code.startswith("4")
    } == {"#/components/schemas/Error"}
