"""Gold labels in admin, and the "Import labelled recipes (JSONL)" upload page."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test.client import Client
from django.urls import reverse

from feedback.models import GoldLabel, GoldLabelSource
from feedback.tests.conftest import GoldLabelFactory
from tagging.models import Recipe
from tagging.tests.conftest import RecipeFactory
from taxonomy.models import Category

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:feedback_goldlabel_changelist")
IMPORT_URL = reverse("admin:feedback_goldlabel_import")


def _recipe(external_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": external_id,
        "title": f"Recipe {external_id}",
        "ingredients": ["1 onion"],
        "instructions": "Fry.",
        **fields,
    }


def _upload(name: str, lines: list[str]) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, ("\n".join(lines) + "\n").encode(), content_type="application/octet-stream")


def _messages(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def test_the_changelist_lists_the_labels_and_links_to_the_import(
    staff_browser: Client, cuisine: Category, django_assert_max_num_queries: Any
) -> None:
    for n in range(5):
        recipe = RecipeFactory(title=f"Soup {n}", ingredients=["water"], content_hash=str(n))
        GoldLabelFactory(recipe=recipe, tag=cuisine.tags.get(slug="italian"), source=GoldLabelSource.IMPORT)

    with django_assert_max_num_queries(12):
        response = staff_browser.get(CHANGELIST)

    assert response.status_code == 200
    content = response.content.decode()
    assert all(f"Soup {n}" in content for n in range(5))
    assert "cuisine/italian" in content
    assert f'href="{IMPORT_URL}"' in content
    assert "Import labelled recipes (JSONL)" in content


def test_the_import_page_offers_the_upload_form(staff_browser: Client) -> None:
    response = staff_browser.get(IMPORT_URL)

    assert response.status_code == 200
    content = response.content.decode()
    for name in ("file", "source", "labeled", "create_taxonomy", "mapping"):
        assert f'name="{name}"' in content


def test_uploading_a_file_imports_it_and_shows_the_report(staff_browser: Client, staff: Any, cuisine: Category) -> None:
    upload = _upload(
        "themealdb.jsonl",
        [
            json.dumps(_recipe("1", tags={"cuisine": ["Italian"], "main_ingredient": ["Beef"]})),
            "{oops",
            json.dumps(_recipe("3", tags={"cuisine": ["Klingon"]})),
        ],
    )

    response = staff_browser.post(IMPORT_URL, {"file": upload, "labeled": "on", "source": ""})

    assert response.status_code == 200
    assert _messages(response) == [
        "Imported “themealdb”: 2 recipes created, 0 updated, 0 unchanged; 1 labels; 0 categories and 0 tags created.",
        "1 bad lines were skipped (listed below).",
        "2 tags are not in the taxonomy and were not stored (listed below).",
    ]
    content = response.content.decode()
    assert "line 2: invalid JSON: Expecting property name enclosed in double quotes (column 2)" in content
    assert "<td>cuisine</td><td>Klingon (1)</td>" in content
    assert "<td>main_ingredient</td><td>Beef (1)</td>" in content
    assert sorted(Recipe.objects.values_list("source", "external_id")) == [("themealdb", "1"), ("themealdb", "3")]
    assert list(GoldLabel.objects.values_list("tag__slug", "created_by")) == [("italian", staff.pk)]


def test_create_taxonomy_and_a_source_name_are_applied(staff_browser: Client, cuisine: Category) -> None:
    upload = _upload("data.jsonl", [json.dumps(_recipe("1", tags={"main_ingredient": ["Beef"]}))])

    response = staff_browser.post(
        IMPORT_URL, {"file": upload, "labeled": "on", "create_taxonomy": "on", "source": "catalogue"}
    )

    assert response.status_code == 200
    assert _messages(response)[0].startswith("Imported “catalogue”: 1 recipes created")
    assert list(Recipe.objects.values_list("source", flat=True)) == ["catalogue"]
    assert list(GoldLabel.objects.values_list("tag__category__slug", "tag__slug")) == [("main_ingredient", "beef")]


def test_a_mapping_file_sends_tags_where_it_says(staff_browser: Client, cuisine: Category) -> None:
    upload = _upload("data.jsonl", [json.dumps(_recipe("1", tags={"area": ["Tex-Mex"]}))])
    mapping = SimpleUploadedFile("map.json", json.dumps({"area": {"Tex-Mex": "cuisine/mexican"}}).encode())

    staff_browser.post(IMPORT_URL, {"file": upload, "labeled": "on", "mapping": mapping})

    assert list(GoldLabel.objects.values_list("tag__slug", flat=True)) == ["mexican"]


def test_a_mapping_naming_a_missing_tag_imports_nothing(staff_browser: Client, cuisine: Category) -> None:
    upload = _upload("data.jsonl", [json.dumps(_recipe("1", tags={"area": ["Tex-Mex"]}))])
    mapping = SimpleUploadedFile("map.json", json.dumps({"area": {"Tex-Mex": "cuisine/texmex"}}).encode())

    response = staff_browser.post(IMPORT_URL, {"file": upload, "labeled": "on", "mapping": mapping})

    assert response.status_code == 200
    assert _messages(response) == [
        "Nothing was imported: the mapping is wrong: area → 'Tex-Mex' → 'cuisine/texmex' is no existing tag."
    ]
    assert Recipe.objects.count() == 0


def test_a_mapping_file_that_is_not_json_is_refused(staff_browser: Client) -> None:
    upload = _upload("data.jsonl", [json.dumps(_recipe("1"))])
    mapping = SimpleUploadedFile("map.json", b"{nope")

    response = staff_browser.post(IMPORT_URL, {"file": upload, "mapping": mapping})

    assert response.status_code == 200
    assert "The mapping file is not valid JSON (line 1, column 2" in response.content.decode()
    assert Recipe.objects.count() == 0


def test_a_file_over_20_mb_is_refused(staff_browser: Client) -> None:
    upload = SimpleUploadedFile("big.jsonl", b"\n" * (20 * 1024 * 1024 + 1))

    response = staff_browser.post(IMPORT_URL, {"file": upload, "labeled": "on"})

    assert response.status_code == 200
    assert _messages(response) == ["Nothing was imported: please correct the errors below."]
    assert "The file is larger than 20 MB (20,971,521 bytes)" in response.content.decode()
    assert Recipe.objects.count() == 0


def test_staff_without_the_permissions_cannot_import(client: Client, django_user_model: Any) -> None:
    clerk = django_user_model.objects.create_user(username="clerk", password="pw", is_staff=True)
    client.force_login(clerk)

    response = client.post(IMPORT_URL, {"file": _upload("data.jsonl", [json.dumps(_recipe("1"))])})

    assert response.status_code == 403
    assert Recipe.objects.count() == 0
