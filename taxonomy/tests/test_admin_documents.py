"""taxonomy.admin: staff export the taxonomy as JSON and import it back."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test.client import Client
from django.urls import reverse

from taxonomy.models import Category, Tag
from taxonomy.selectors import taxonomy_export
from taxonomy.services.documents import taxonomy_import
from taxonomy.tests.conftest import TagFactory

pytestmark = pytest.mark.django_db

CATEGORY_CHANGELIST = reverse("admin:taxonomy_category_changelist")
EXPORT_URL = reverse("admin:taxonomy_category_export")
IMPORT_URL = reverse("admin:taxonomy_category_import")


def _messages(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


# --- Import / export ----------------------------------------------------------------------------------


def test_it_links_import_and_export_from_the_category_list(staff_browser: Client) -> None:
    response = staff_browser.get(CATEGORY_CHANGELIST)

    content = response.content.decode()
    assert f'href="{EXPORT_URL}"' in content
    assert f'href="{IMPORT_URL}"' in content
    assert "Export taxonomy JSON" in content
    assert "Import taxonomy JSON" in content


def test_it_exports_the_taxonomy_as_a_json_file_that_imports_back(
    staff_browser: Client, taxonomy: dict[str, Any]
) -> None:
    response = staff_browser.get(EXPORT_URL)
    exported = json.loads(response.content)
    Category.objects.all().delete()
    result = taxonomy_import(data=exported)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == 'attachment; filename="taxonomy.json"'
    assert [c["slug"] for c in exported["categories"]] == [c["slug"] for c in taxonomy["categories"]]
    assert result.tags_created == sum(len(c["tags"]) for c in taxonomy["categories"])
    assert taxonomy_export() == exported


def test_it_imports_a_valid_taxonomy_file(staff_browser: Client, cuisine: Category) -> None:
    TagFactory(category=cuisine, slug="italian", description="Pasta.")
    document = {
        "categories": [
            {"slug": "cuisine", "name": "Cuisine", "tags": [{"slug": "italian", "name": "Italian"}]},
            {
                "slug": "diet",
                "name": "Diet",
                "default_max_tags": 2,
                "tags": [
                    {"slug": "vegan", "name": "Vegan", "synonyms": ["plant-based"]},
                    {"slug": "gluten-free", "name": "Gluten-free"},
                ],
            },
        ]
    }
    upload = SimpleUploadedFile("taxonomy.json", json.dumps(document).encode(), content_type="application/json")

    response = staff_browser.post(IMPORT_URL, {"file": upload})

    assert response.status_code == 302
    assert response["Location"] == CATEGORY_CHANGELIST
    assert sorted(Tag.objects.values_list("category__slug", "slug")) == [
        ("cuisine", "italian"),
        ("diet", "gluten-free"),
        ("diet", "vegan"),
    ]
    assert Tag.objects.get(slug="vegan").synonyms == ["plant-based"]
    assert Category.objects.get(slug="diet").default_max_tags == 2
    assert _messages(response)[0].startswith(
        "Imported the taxonomy: 1 categories created, 1 updated; 2 tags created, 1 updated."
    )


def _assert_nothing_imported(response: Any, error: str) -> None:
    assert response.status_code == 200
    assert "admin/taxonomy/category/import.html" in [t.name for t in response.templates]
    assert error in response.content.decode()
    assert any(m.startswith("Nothing was imported") for m in _messages(response))
    assert sorted(Category.objects.values_list("slug", flat=True)) == ["cuisine"]
    assert list(Tag.objects.values_list("slug", "description")) == [("italian", "Pasta.")]


def test_it_rejects_a_file_that_is_not_json_and_changes_nothing(staff_browser: Client, cuisine: Category) -> None:
    TagFactory(category=cuisine, slug="italian", description="Pasta.")
    upload = SimpleUploadedFile("taxonomy.json", b'{"categories": [{"slug": "diet",')

    response = staff_browser.post(IMPORT_URL, {"file": upload})

    _assert_nothing_imported(response, "The file is not valid JSON (line 1")


def test_it_rejects_a_document_the_taxonomy_refuses_and_changes_nothing(
    staff_browser: Client, cuisine: Category
) -> None:
    TagFactory(category=cuisine, slug="italian", description="Pasta.")
    document = {
        "categories": [
            {
                "slug": "cuisine",
                "name": "Cuisine",
                "tags": [{"slug": "italian", "name": "Italian", "description": "X"}],
            },
            {"slug": "diet", "name": "Diet", "default_max_tags": 50},
        ]
    }
    upload = SimpleUploadedFile("taxonomy.json", json.dumps(document).encode())

    response = staff_browser.post(IMPORT_URL, {"file": upload})

    _assert_nothing_imported(response, "&#x27;default_max_tags&#x27; must be a whole number from 1 to 20")


def test_it_rejects_a_file_over_five_megabytes(staff_browser: Client, cuisine: Category) -> None:
    TagFactory(category=cuisine, slug="italian", description="Pasta.")
    padding = " " * (5 * 1024 * 1024)
    upload = SimpleUploadedFile("taxonomy.json", ('{"categories": []}' + padding).encode())

    response = staff_browser.post(IMPORT_URL, {"file": upload})

    _assert_nothing_imported(response, "the limit is 5 MB")
