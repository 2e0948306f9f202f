"""Management commands: taxonomy_import, taxonomy_export, and the bootstrap commands of `make run`
(load_demo_recipes, ensure_admin)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from pytest_django import Settings

from conftest import DEFAULT_TAXONOMY
from tagging.models import Recipe
from taxonomy.models import Category, Tag
from taxonomy.selectors import taxonomy_export

pytestmark = pytest.mark.django_db

DEMO_RECIPE_COUNT = 14
DEFAULT = json.loads(DEFAULT_TAXONOMY.read_text())


def _call(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


# --- taxonomy_import --------------------------------------------------------------------------


def test_it_loads_the_default_taxonomy_with_every_tag_embedded() -> None:
    output = _call("taxonomy_import", "--default", "--embed-now")

    assert list(Category.objects.order_by("id").values_list("slug", flat=True)) == [
        category["slug"] for category in DEFAULT["categories"]
    ]
    assert Tag.objects.count() == sum(len(category["tags"]) for category in DEFAULT["categories"])
    assert not Tag.objects.filter(embedding__isnull=True).exists()
    assert set(Tag.objects.values_list("embedding_model", flat=True)) == {settings.EMBEDDING_MODEL}
    assert "embeddings computed" in output


def test_if_empty_leaves_a_non_empty_taxonomy_alone() -> None:
    Category.objects.create(name="House specials", slug="house_specials")

    output = _call("taxonomy_import", "--default", "--if-empty")

    assert list(Category.objects.values_list("slug", flat=True)) == ["house_specials"]
    assert not Tag.objects.exists()
    assert output == "The taxonomy is not empty; nothing imported (--if-empty).\n"


def test_if_empty_imports_into_an_empty_taxonomy() -> None:
    _call("taxonomy_import", "--default", "--if-empty", "--embed-now")

    assert Category.objects.count() == len(DEFAULT["categories"])
    assert Tag.objects.count() == sum(len(category["tags"]) for category in DEFAULT["categories"])


def test_it_names_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.json"

    with pytest.raises(CommandError, match=f"^No such file: {re.escape(str(path))}$"):
        call_command("taxonomy_import", str(path))

    assert not Category.objects.exists()


def test_it_names_a_file_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"categories": [', encoding="utf-8")

    with pytest.raises(CommandError, match=f"^{re.escape(str(path))} is not valid JSON: "):
        call_command("taxonomy_import", str(path))

    assert not Category.objects.exists()


def test_it_names_the_file_and_the_place_of_an_invalid_taxonomy(tmp_path: Path) -> None:
    path = tmp_path / "taxonomy.json"
    path.write_text(json.dumps({"categories": [{"name": "Cuisine", "default_max_tags": 0}]}), encoding="utf-8")

    with pytest.raises(CommandError) as excinfo:
        call_command("taxonomy_import", str(path))

    assert str(excinfo.value) == f"{path}: categories[0]: 'default_max_tags' must be a whole number from 1 to 20."
    assert not Category.objects.exists()


def test_it_wants_a_path_or_default_but_not_both(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match=r"^Give a PATH or --default \(one of the two\)\.$"):
        call_command("taxonomy_import", str(tmp_path / "taxonomy.json"), "--default")


# --- taxonomy_export --------------------------------------------------------------------------


def test_an_exported_file_imports_back_as_the_same_taxonomy(taxonomy: Any, tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    call_command("taxonomy_export", "-o", str(path), stdout=io.StringIO(), stderr=io.StringIO())
    exported = json.loads(path.read_text(encoding="utf-8"))
    Category.objects.all().delete()

    output = _call("taxonomy_import", str(path))

    assert exported["format"] == "autotagger-taxonomy"
    assert len(exported["categories"]) == len(taxonomy["categories"])
    assert taxonomy_export() == exported
    assert f"{len(exported['categories'])} categories created" in output


def test_export_without_a_file_writes_the_json_to_standard_output(taxonomy: Any) -> None:
    output = _call("taxonomy_export")

    assert json.loads(output) == taxonomy_export()


# --- load_demo_recipes ------------------------------------------------------------------------


def test_it_adds_the_demo_recipes(demo_recipes: list[dict[str, Any]]) -> None:
    output = _call("load_demo_recipes")

    assert Recipe.objects.filter(source="demo").count() == DEMO_RECIPE_COUNT == len(demo_recipes)
    carbonara = Recipe.objects.get(source="demo", external_id="demo-spaghetti-carbonara")
    assert carbonara.title == "Spaghetti Carbonara"
    assert carbonara.ingredients[0] == "200 g spaghetti"
    assert len(carbonara.content_hash) == 64
    assert output == f"Demo recipes: {DEMO_RECIPE_COUNT} added.\n"


def test_loading_the_demo_recipes_twice_adds_them_once() -> None:
    _call("load_demo_recipes")

    output = _call("load_demo_recipes")

    assert Recipe.objects.count() == DEMO_RECIPE_COUNT
    assert output == "Demo recipes: 0 added.\n"


# --- ensure_admin -----------------------------------------------------------------------------


def test_it_creates_the_admin_with_the_password_from_settings(settings: Settings) -> None:
    settings.AUTOTAGGER_ADMIN_USER = "admin"
    settings.AUTOTAGGER_ADMIN_PASSWORD = "a-chosen-password"

    output = _call("ensure_admin")

    admin = get_user_model().objects.get(username="admin")
    assert (admin.is_superuser, admin.is_staff, admin.is_active) == (True, True, True)
    assert admin.check_password("a-chosen-password")
    assert "a-chosen-password" not in output


def test_without_a_password_setting_it_prints_a_generated_password_once(settings: Settings) -> None:
    settings.AUTOTAGGER_ADMIN_USER = "admin"
    settings.AUTOTAGGER_ADMIN_PASSWORD = ""

    first = _call("ensure_admin")
    second = _call("ensure_admin")

    match = re.search(r"Created admin user 'admin' with password: (\S+)", first)
    assert match is not None, first
    password = match.group(1)
    assert len(password) >= 12
    assert get_user_model().objects.get(username="admin").check_password(password)
    assert password not in second
    assert second == "Admin user 'admin' already exists; its password is unchanged.\n"


def test_it_leaves_an_existing_admin_password_alone(settings: Settings, django_user_model: Any) -> None:
    django_user_model.objects.create_user(username="admin", password="the-original-password")
    settings.AUTOTAGGER_ADMIN_USER = "admin"
    settings.AUTOTAGGER_ADMIN_PASSWORD = "a-new-password"

    _call("ensure_admin")

    admin = django_user_model.objects.get(username="admin")
    assert admin.check_password("the-original-password")
    assert not admin.check_password("a-new-password")
