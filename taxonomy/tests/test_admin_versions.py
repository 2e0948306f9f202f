"""The taxonomy's version on the category list, and its read-only change log in admin."""

from __future__ import annotations

from typing import Any

import pytest
from django.test.client import Client
from django.urls import reverse

from taxonomy.models import TaxonomyVersion

pytestmark = pytest.mark.django_db


def test_the_category_list_shows_the_taxonomy_version(staff_browser: Client) -> None:
    TaxonomyVersion.objects.create(number=5, changes=[], snapshot={})

    response = staff_browser.get(reverse("admin:taxonomy_category_changelist"))

    assert "Taxonomy version <strong>5</strong>" in response.content.decode()


def test_the_change_log_lists_versions_with_who_changed_what(staff_browser: Client, staff: Any) -> None:
    TaxonomyVersion.objects.create(
        number=2,
        changed_by=staff,
        changes=[{"kind": "tag", "action": "changed", "object": "cuisine/thai", "fields": ["synonyms"]}],
        snapshot={},
    )

    listing = staff_browser.get(reverse("admin:taxonomy_taxonomyversion_changelist"))
    version = TaxonomyVersion.objects.get(number=2)
    detail = staff_browser.get(reverse("admin:taxonomy_taxonomyversion_change", args=[version.pk]))

    assert listing.status_code == 200
    assert "tag cuisine/thai changed (synonyms)" in listing.content.decode()
    assert "staff" in listing.content.decode()
    assert detail.status_code == 200
    assert "<li>tag cuisine/thai changed (synonyms)</li>" in detail.content.decode()


def test_nobody_edits_a_taxonomy_version(staff_browser: Client) -> None:
    version = TaxonomyVersion.objects.get(number=1)

    response = staff_browser.post(reverse("admin:taxonomy_taxonomyversion_delete", args=[version.pk]), {"post": "yes"})

    assert response.status_code == 403
    assert TaxonomyVersion.objects.filter(pk=version.pk).exists()
    assert staff_browser.get(reverse("admin:taxonomy_taxonomyversion_add")).status_code == 403
