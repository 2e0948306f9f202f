"""The tags' version (taxonomy.selectors.tags_version) changes with every write to the tags or their vectors,
however it is made, stays put otherwise, and never comes back after a rollback."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from taxonomy.models import Category, Tag, TagEmbedding
from taxonomy.selectors import tags_version
from taxonomy.tests.conftest import CategoryFactory, TagFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def tags(cuisine: Category) -> list[Tag]:
    return [TagFactory(category=cuisine, slug=slug) for slug in ("italian", "thai", "mexican")]


def _vector() -> list[float]:
    return list(np.random.default_rng(0).random(settings.EMBEDDING_DIMENSIONS))


def _save_one(tags: list[Tag]) -> None:
    tags[0].description = "Pasta, olive oil and tomatoes."
    tags[0].save()


def _update_without_save(tags: list[Tag]) -> None:
    Tag.objects.filter(pk=tags[0].pk).update(active=False)


def _bulk_update(tags: list[Tag]) -> None:
    for tag in tags:
        tag.synonyms = [f"{tag.slug} food"]
    Tag.objects.bulk_update(tags, ["synonyms"])


def _bulk_create(tags: list[Tag]) -> None:
    Tag.objects.bulk_create([Tag(category=tags[0].category, slug="greek", name="Greek")])


def _delete_one(tags: list[Tag]) -> None:
    tags[0].delete()


def _delete_the_category(tags: list[Tag]) -> None:
    tags[0].category.delete()


def _embed_with_another_model(tags: list[Tag]) -> None:
    TagEmbedding.objects.create(tag=tags[0], model="another-model", embedding=_vector(), embedded_at=timezone.now())


def _truncate_the_other_models_vectors(tags: list[Tag]) -> None:
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE taxonomy_tagembedding")


@pytest.mark.parametrize(
    "write",
    [
        _save_one,
        _update_without_save,
        _bulk_update,
        _bulk_create,
        _delete_one,
        _delete_the_category,
        _embed_with_another_model,
        _truncate_the_other_models_vectors,
    ],
)
def test_it_changes_with_every_kind_of_write_to_the_tags(tags: list[Tag], write: Callable[[list[Tag]], None]) -> None:
    before = tags_version()

    write(tags)

    assert tags_version() != before


def test_it_changes_when_a_vector_of_another_model_is_refreshed(tags: list[Tag]) -> None:
    TagEmbedding.objects.create(tag=tags[0], model="another-model", embedding=_vector(), embedded_at=timezone.now())
    before = tags_version()

    TagEmbedding.objects.filter(tag=tags[0]).update(embedding=_vector())

    assert tags_version() != before


def test_it_stays_put_when_nothing_about_the_tags_is_written(tags: list[Tag]) -> None:
    before = tags_version()

    list(Tag.objects.all())
    CategoryFactory(slug="diet")

    assert tags_version() == before


def test_it_never_comes_back_after_a_rollback(tags: list[Tag]) -> None:
    before = tags_version()
    with transaction.atomic():
        Tag.objects.filter(pk=tags[0].pk).update(active=False)
        rolled_back = tags_version()
        transaction.set_rollback(True)
    assert tags_version() == before

    Tag.objects.filter(pk=tags[1].pk).update(active=False)

    assert tags_version() not in (before, rolled_back)
