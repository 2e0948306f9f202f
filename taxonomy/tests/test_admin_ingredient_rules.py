"""Staff edit ingredient groups and the rules of tags in admin."""

from __future__ import annotations

import pytest
from django.test.client import Client
from django.urls import reverse

from taxonomy.models import Category, IngredientGroup, Tag
from taxonomy.tests.conftest import TagFactory

pytestmark = pytest.mark.django_db


def test_staff_create_an_ingredient_group_from_comma_separated_terms(staff_browser: Client) -> None:
    response = staff_browser.post(
        reverse("admin:taxonomy_ingredientgroup_add"),
        {
            "name": "Dairy",
            "slug": "dairy",
            "description": "",
            "terms": "milk, butter ,cheese",
            "exceptions": "coconut milk,  peanut   butter",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    dairy = IngredientGroup.objects.get(slug="dairy")
    assert dairy.terms == ["milk", "butter", "cheese"]
    assert dairy.exceptions == ["coconut milk", "peanut butter"]


def test_the_ingredient_group_list_shows_how_many_tags_each_group_excludes(
    staff_browser: Client, diet: Category
) -> None:
    meat = IngredientGroup.objects.create(name="Meat", slug="meat", terms=["chicken"])
    TagFactory(category=diet, slug="vegetarian").excluded_by.add(meat)
    TagFactory(category=diet, slug="vegan").excluded_by.add(meat)

    page = staff_browser.get(reverse("admin:taxonomy_ingredientgroup_changelist")).content.decode()

    assert "Meat" in page
    assert '<td class="field-used_by">2</td>' in page


def test_staff_set_a_tags_excluded_by_groups_and_required_terms(staff_browser: Client, diet: Category) -> None:
    meat = IngredientGroup.objects.create(name="Meat", slug="meat", terms=["chicken"])
    tag = TagFactory(category=diet, slug="vegetarian", name="Vegetarian")
    url = reverse("admin:taxonomy_tag_change", args=[tag.pk])
    assert "excluded_by" in staff_browser.get(url).content.decode()

    response = staff_browser.post(
        url,
        {
            "category": diet.pk,
            "name": "Vegetarian",
            "slug": "vegetarian",
            "description": "",
            "synonyms": "",
            "active": "on",
            "excluded_by": [meat.pk],
            "required_terms": "tofu, beans",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    tag = Tag.objects.get(pk=tag.pk)
    assert list(tag.excluded_by.values_list("slug", flat=True)) == ["meat"]
    assert tag.required_terms == ["tofu", "beans"]
