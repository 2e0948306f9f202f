"""Factories for the feedback models and the fixtures the feedback tests share."""

from __future__ import annotations

import factory
import pytest
from factory.django import DjangoModelFactory

from feedback.models import GoldLabel, GoldLabelSource
from tagging.tests.conftest import RecipeFactory
from taxonomy.models import Category
from taxonomy.tests.conftest import CategoryFactory, TagFactory


class GoldLabelFactory(DjangoModelFactory):
    class Meta:
        model = GoldLabel

    recipe = factory.SubFactory(RecipeFactory)
    tag = factory.SubFactory(TagFactory)
    source = GoldLabelSource.IMPORT


@pytest.fixture
def cuisine(db: None) -> Category:
    """A "Cuisine" category with two tags, Italian and Mexican."""
    category = CategoryFactory(slug="cuisine")
    TagFactory(category=category, slug="italian")
    TagFactory(category=category, slug="mexican")
    return category
