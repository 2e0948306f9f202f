"""Factories for the taxonomy models and the fixtures the taxonomy tests share."""

from __future__ import annotations

import factory
import pytest
from factory.django import DjangoModelFactory

from taxonomy.models import Category, Tag


class CategoryFactory(DjangoModelFactory):
    """A category named after its slug ("dish_type" is "Dish Type")."""

    class Meta:
        model = Category

    slug = factory.Sequence(lambda n: f"category_{n}")
    name = factory.LazyAttribute(lambda category: category.slug.replace("_", " ").title())


class TagFactory(DjangoModelFactory):
    """A tag named after its slug ("low-carb" is "Low Carb"), not yet embedded."""

    class Meta:
        model = Tag

    category = factory.SubFactory(CategoryFactory)
    slug = factory.Sequence(lambda n: f"tag-{n}")
    name = factory.LazyAttribute(lambda tag: tag.slug.replace("-", " ").title())


@pytest.fixture
def cuisine(db: None) -> Category:
    """An empty "Cuisine" category, first in position order."""
    return CategoryFactory(slug="cuisine", position=1)


@pytest.fixture
def diet(db: None) -> Category:
    return CategoryFactory(slug="diet", position=2)
