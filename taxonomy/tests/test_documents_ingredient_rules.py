"""Ingredient groups and tag rules in taxonomy documents (taxonomy.services.documents, taxonomy_export)."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from conftest import DEFAULT_TAXONOMY
from taxonomy.models import Category, IngredientGroup, Tag
from taxonomy.selectors import tag_rules, taxonomy_export
from taxonomy.services.changes import TaxonomyError
from taxonomy.services.documents import taxonomy_import

pytestmark = pytest.mark.django_db


def _document() -> dict[str, Any]:
    return {
        "ingredient_groups": [
            {
                "slug": "meat",
                "name": "Meat",
                "terms": ["chicken", " beef ", "chicken", ""],
                "exceptions": ["vegan *"],
            },
            {"name": "Gluten", "terms": ["flour"], "exceptions": ["gluten-free flour"]},
        ],
        "categories": [
            {
                "slug": "diet",
                "name": "Diet",
                "tags": [
                    {"slug": "vegetarian", "name": "Vegetarian", "excluded_by": ["meat"]},
                    {"slug": "gluten-free", "name": "Gluten-free", "excluded_by": ["gluten", "meat"]},
                    {"slug": "high-protein", "name": "High protein"},
                ],
            },
            {
                "slug": "main_ingredient",
                "name": "Main ingredient",
                "tags": [{"slug": "paneer", "name": "Paneer", "required_terms": ["paneer"]}],
            },
        ],
    }


def _excluded_by(slug: str) -> set[str]:
    return set(Tag.objects.get(slug=slug).excluded_by.values_list("slug", flat=True))


def test_it_imports_ingredient_groups_and_the_rules_of_tags() -> None:
    result = taxonomy_import(data=_document())

    meat = IngredientGroup.objects.get(slug="meat")
    assert (result.ingredient_groups_created, result.ingredient_groups_updated) == (2, 0)
    assert (meat.name, meat.terms, meat.exceptions) == ("Meat", ["chicken", "beef"], ["vegan *"])
    assert IngredientGroup.objects.get(name="Gluten").slug == "gluten"
    assert _excluded_by("vegetarian") == {"meat"}
    assert _excluded_by("gluten-free") == {"gluten", "meat"}
    assert _excluded_by("high-protein") == set()
    assert Tag.objects.get(slug="paneer").required_terms == ["paneer"]


def test_reimporting_the_same_document_changes_nothing() -> None:
    taxonomy_import(data=_document())

    result = taxonomy_import(data=_document())

    assert (result.ingredient_groups_created, result.ingredient_groups_updated, result.tags_updated) == (0, 0, 0)


def test_a_changed_rule_is_imported_and_a_tag_without_rule_keys_keeps_its_rules() -> None:
    taxonomy_import(data=_document())
    document = _document()
    document["categories"][0]["tags"][0]["excluded_by"] = ["meat", "gluten"]
    del document["categories"][0]["tags"][1]["excluded_by"]
    document["ingredient_groups"][0]["terms"].append("pork")

    result = taxonomy_import(data=document)

    assert _excluded_by("vegetarian") == {"meat", "gluten"}
    assert _excluded_by("gluten-free") == {"gluten", "meat"}
    assert IngredientGroup.objects.get(slug="meat").terms == ["chicken", "beef", "pork"]
    assert (result.ingredient_groups_updated, result.tags_updated) == (1, 1)


def _invalid(change: Any) -> dict[str, Any]:
    document = _document()
    change(document)
    return document


@pytest.mark.parametrize(
    ("document", "message"),
    [
        pytest.param(
            _invalid(lambda d: d["categories"][0]["tags"][0].update(excluded_by=["fish"])),
            "categories[0].tags[0]: 'excluded_by' names unknown ingredient groups: fish "
            "(define them in 'ingredient_groups').",
            id="unknown-group",
        ),
        pytest.param(
            _invalid(lambda d: d["categories"][1]["tags"][0].update(required_terms="paneer")),
            "categories[1].tags[0]: 'required_terms' must be a list of strings.",
            id="required-terms-not-a-list",
        ),
        pytest.param(
            _invalid(lambda d: d["ingredient_groups"][1].update(terms=[" "])),
            "ingredient_groups[1]: 'terms' must name at least one ingredient.",
            id="group-without-terms",
        ),
        pytest.param(
            _invalid(lambda d: d["ingredient_groups"][1].update(slug="meat")),
            "ingredient_groups[1]: ingredient group slug 'meat' appears twice.",
            id="group-slug-twice",
        ),
        pytest.param(
            _invalid(lambda d: d["ingredient_groups"][0].update(exceptions=["x" * 101])),
            "ingredient_groups[0]: an entry of 'exceptions' is longer than 100 characters.",
            id="exception-too-long",
        ),
        pytest.param(
            _invalid(lambda d: d.update(ingredient_groups={"meat": ["chicken"]})),
            "'ingredient_groups' must be a list.",
            id="groups-not-a-list",
        ),
    ],
)
def test_it_refuses_invalid_rules_naming_the_place_and_writes_nothing(document: Any, message: str) -> None:
    with pytest.raises(TaxonomyError, match=f"^{re.escape(message)}$"):
        taxonomy_import(data=document)

    assert (Category.objects.count(), Tag.objects.count(), IngredientGroup.objects.count()) == (0, 0, 0)


def test_an_exported_taxonomy_with_rules_imports_into_an_empty_database_as_the_same_taxonomy(
    taxonomy: Any,
) -> None:
    exported = taxonomy_export()
    Category.objects.all().delete()
    IngredientGroup.objects.all().delete()

    taxonomy_import(data=copy.deepcopy(exported))

    assert taxonomy_export() == exported
    assert len(exported["ingredient_groups"]) == len(taxonomy["ingredient_groups"])


def test_the_default_taxonomy_ships_the_rules_of_its_diets_occasions_and_main_ingredients(taxonomy: Any) -> None:
    tags = {(t.category.slug, t.slug): t for t in Tag.objects.select_related("category")}
    rules = tag_rules(tag_ids=[t.pk for t in tags.values()])

    def excluded(category: str, slug: str) -> set[str]:
        return {group.slug for group in rules[tags[(category, slug)].pk].excluded_by}

    assert excluded("diet", "vegetarian") == {"meat", "fish", "shellfish"}
    assert excluded("diet", "vegan") == {"meat", "fish", "shellfish", "dairy", "egg", "honey"}
    assert excluded("diet", "halal") == {"pork", "alcohol"}
    assert excluded("diet", "kosher") == {"pork", "shellfish"}
    assert excluded("diet", "gluten-free") == {"gluten"}
    assert excluded("diet", "nut-free") == {"nuts"}
    assert {"pork", "shellfish"} <= excluded("occasion", "passover")
    main_ingredients = [t for (category, _), t in tags.items() if category == "main_ingredient"]
    assert all(rules[t.pk].required_terms for t in main_ingredients)
    assert DEFAULT_TAXONOMY.read_text().count('"required_terms"') == len(main_ingredients)
