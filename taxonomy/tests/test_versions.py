"""taxonomy.services.versions: every change to what decides tags records a new version (after commit, once per
transaction) with a log of what changed and who changed it; a save that changes nothing records nothing."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest
from django.db import transaction
from django.test.client import Client
from django.urls import reverse

from taxonomy.models import Category, IngredientGroup, Tag, TaxonomyVersion
from taxonomy.selectors import taxonomy_version_current
from taxonomy.services.changes import categories_set_active, tag_merge, tags_set_active
from taxonomy.services.documents import taxonomy_import
from taxonomy.services.versions import taxonomy_version_record
from taxonomy.tests.conftest import TagFactory

pytestmark = pytest.mark.django_db

Committing = Callable[..., AbstractContextManager[Any]]


@pytest.fixture
def baseline(taxonomy: dict[str, Any]) -> int:
    """The default taxonomy recorded as the latest version (the fixture inserts it without signals)."""
    version = taxonomy_version_record()
    assert version is not None
    return version.number


@pytest.fixture
def committing(django_capture_on_commit_callbacks: Committing) -> Callable[[], Any]:
    """Runs what is queued for after commit when the block ends, as a real commit would."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def _latest() -> TaxonomyVersion:
    return TaxonomyVersion.objects.order_by("-number").first()  # type: ignore[return-value]


def test_it_is_version_1_while_nothing_is_recorded() -> None:
    TaxonomyVersion.objects.all().delete()

    assert taxonomy_version_current() == 1


def test_the_migration_recorded_version_1() -> None:
    assert list(TaxonomyVersion.objects.values_list("number", flat=True)) == [1]


def test_editing_a_category_description_records_a_version_naming_it(
    baseline: int, committing: Callable[[], Any]
) -> None:
    category = Category.objects.get(slug="cuisine")

    with committing():
        category.description = "Where a dish comes from."
        category.save()

    assert taxonomy_version_current() == baseline + 1
    assert _latest().changes == [
        {"kind": "category", "action": "changed", "object": "cuisine", "fields": ["description"]}
    ]


def test_changing_a_tags_synonyms_records_a_version(baseline: int, committing: Callable[[], Any]) -> None:
    tag = Tag.objects.get(category__slug="cuisine", slug="thai")

    with committing():
        tag.synonyms = [*tag.synonyms, "siamese"]
        tag.save()

    assert _latest().number == baseline + 1
    assert _latest().changes == [{"kind": "tag", "action": "changed", "object": "cuisine/thai", "fields": ["synonyms"]}]


def test_deactivating_tags_through_the_service_records_a_version(baseline: int, committing: Callable[[], Any]) -> None:
    tag = Tag.objects.get(category__slug="cuisine", slug="thai")

    with committing():
        tags_set_active(tag_ids=[tag.pk], active=False)

    assert _latest().changes == [{"kind": "tag", "action": "changed", "object": "cuisine/thai", "fields": ["active"]}]


def test_deactivating_a_category_through_the_service_records_a_version(
    baseline: int, committing: Callable[[], Any]
) -> None:
    category = Category.objects.get(slug="cuisine")

    with committing():
        categories_set_active(category_ids=[category.pk], active=False)

    assert _latest().changes == [{"kind": "category", "action": "changed", "object": "cuisine", "fields": ["active"]}]


def test_an_admin_action_records_who_deactivated_the_tags(
    baseline: int, committing: Callable[[], Any], staff_browser: Client, staff: Any
) -> None:
    tag = Tag.objects.get(category__slug="cuisine", slug="thai")

    with committing():
        response = staff_browser.post(
            reverse("admin:taxonomy_tag_changelist"), {"action": "deactivate", "_selected_action": [tag.pk]}
        )

    assert response.status_code == 302
    assert _latest().number == baseline + 1
    assert _latest().changed_by == staff
    assert _latest().changes[0]["object"] == "cuisine/thai"


def test_an_admin_edit_records_who_changed_the_category(
    baseline: int, committing: Callable[[], Any], staff_browser: Client, staff: Any
) -> None:
    category = Category.objects.get(slug="diet")
    form = {
        "name": "Dietary needs",
        "slug": category.slug,
        "description": category.description,
        "default_max_tags": category.default_max_tags,
        "position": category.position,
        "active": "on",
        "tags-TOTAL_FORMS": "0",
        "tags-INITIAL_FORMS": "0",
        "_save": "Save",
    }

    with committing():
        response = staff_browser.post(reverse("admin:taxonomy_category_change", args=[category.pk]), form)

    assert response.status_code == 302, response.content.decode()[:2000]
    assert _latest().changed_by == staff
    assert _latest().changes == [{"kind": "category", "action": "changed", "object": "diet", "fields": ["name"]}]


def test_merging_two_tags_records_the_removal_and_the_new_synonyms(
    baseline: int, committing: Callable[[], Any]
) -> None:
    thai = Tag.objects.get(category__slug="cuisine", slug="thai")
    with committing():
        siamese = TagFactory(category=thai.category, slug="siamese", name="Siamese")

    with committing():
        tag_merge(source=siamese, target=thai)

    assert _latest().number == baseline + 2
    assert _latest().changes == [
        {"kind": "tag", "action": "removed", "object": "cuisine/siamese", "fields": []},
        {"kind": "tag", "action": "changed", "object": "cuisine/thai", "fields": ["synonyms"]},
    ]


def test_editing_an_ingredient_groups_terms_records_a_version(baseline: int, committing: Callable[[], Any]) -> None:
    group = IngredientGroup.objects.order_by("slug").first()
    assert group is not None

    with committing():
        group.terms = [*group.terms, "mystery meat"]
        group.save()

    assert _latest().changes == [
        {"kind": "ingredient_group", "action": "changed", "object": group.slug, "fields": ["terms"]}
    ]


def test_adding_an_ingredient_group_to_a_tags_exclusions_records_a_version(
    baseline: int, committing: Callable[[], Any]
) -> None:
    tag = Tag.objects.get(category__slug="cuisine", slug="thai")
    group = IngredientGroup.objects.exclude(excluded_tags=tag).order_by("slug").first()
    assert group is not None

    with committing():
        tag.excluded_by.add(group)

    assert _latest().changes == [
        {"kind": "tag", "action": "changed", "object": "cuisine/thai", "fields": ["excluded_by"]}
    ]


def test_an_import_records_one_version_for_the_whole_document(baseline: int, committing: Callable[[], Any]) -> None:
    document = {
        "categories": [
            {"slug": "cuisine", "name": "Cuisine", "tags": [{"slug": "nordic", "name": "Nordic"}]},
            {"slug": "technique_test", "name": "Technique", "tags": [{"slug": "sous-vide", "name": "Sous vide"}]},
        ]
    }

    with committing():
        taxonomy_import(data=document)

    assert TaxonomyVersion.objects.filter(number__gt=baseline).count() == 1
    assert {(c["kind"], c["action"], c["object"]) for c in _latest().changes} >= {
        ("tag", "added", "cuisine/nordic"),
        ("category", "added", "technique_test"),
        ("tag", "added", "technique_test/sous-vide"),
    }


def test_saving_a_tag_without_changing_it_records_nothing(baseline: int, committing: Callable[[], Any]) -> None:
    tag = Tag.objects.get(category__slug="cuisine", slug="thai")

    with committing():
        tag.save()

    assert taxonomy_version_current() == baseline


def test_changing_only_a_categorys_threshold_records_nothing(baseline: int, committing: Callable[[], Any]) -> None:
    category = Category.objects.get(slug="cuisine")

    with committing():
        category.relevance_threshold = 0.42
        category.save()

    assert taxonomy_version_current() == baseline


def test_a_rolled_back_change_records_nothing_and_the_next_one_still_records(
    baseline: int, committing: Callable[[], Any]
) -> None:
    tag = Tag.objects.get(category__slug="cuisine", slug="thai")

    with committing():
        with transaction.atomic():
            tag.description = "Rolled back."
            tag.save()
            transaction.set_rollback(True)
        tag.refresh_from_db()
        tag.name = "Thai food"
        tag.save()

    assert taxonomy_version_current() == baseline + 1
    assert _latest().changes == [{"kind": "tag", "action": "changed", "object": "cuisine/thai", "fields": ["name"]}]


def test_many_changes_in_one_transaction_record_one_version(baseline: int, committing: Callable[[], Any]) -> None:
    tags = list(Tag.objects.filter(category__slug="cuisine").order_by("id")[:5])

    with committing():
        for tag in tags:
            tag.description = f"{tag.description} Edited."
            tag.save()

    assert taxonomy_version_current() == baseline + 1
    assert len(_latest().changes) == 5
