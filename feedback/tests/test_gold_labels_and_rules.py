"""Ingredient rules decide what a tagger may say, never what people said: gold labels are kept as given."""

from __future__ import annotations

import json
from typing import Any

import pytest

from feedback.models import GoldLabel
from feedback.services.imports import recipes_import

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("taxonomy")]


def test_an_imported_label_that_contradicts_the_ingredients_is_kept_as_a_gold_label() -> None:
    line = {
        "id": "tacos-1",
        "title": "Beef tacos",
        "ingredients": ["500 g ground beef", "8 corn tortillas"],
        "instructions": "Brown the beef and fill the tortillas.",
        "tags": {"diet": ["vegetarian"], "main_ingredient": ["paneer", "beef"]},
    }

    report: Any = recipes_import(
        lines=[json.dumps(line)], source="testset", labeled=True, create_taxonomy=False, mapping=None
    )

    assert report.labels == 3
    labels = set(GoldLabel.objects.filter(recipe__external_id="tacos-1").values_list("tag__slug", flat=True))
    assert labels == {"vegetarian", "paneer", "beef"}
