"""A merge of two tags (taxonomy.services.changes.tag_merge) keeps the gold labels of the merged tag."""

from __future__ import annotations

import pytest

from feedback.models import GoldLabel
from feedback.tests.conftest import GoldLabelFactory
from tagging.tests.conftest import RecipeFactory
from taxonomy.models import Category
from taxonomy.services.changes import tag_merge

pytestmark = pytest.mark.django_db


def test_merging_a_tag_moves_its_gold_labels_to_the_tag_it_is_merged_into(cuisine: Category) -> None:
    italian, mexican = cuisine.tags.get(slug="italian"), cuisine.tags.get(slug="mexican")
    tacos, fusion = RecipeFactory(title="Tacos"), RecipeFactory(title="Fusion")
    GoldLabelFactory(recipe=tacos, tag=mexican)
    GoldLabelFactory(recipe=fusion, tag=mexican)
    GoldLabelFactory(recipe=fusion, tag=italian)

    tag_merge(source=mexican, target=italian)

    assert sorted(GoldLabel.objects.values_list("recipe__title", "tag__slug")) == [
        ("Fusion", "italian"),
        ("Tacos", "italian"),
    ]
