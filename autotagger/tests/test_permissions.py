"""The roles: the reviewers group its migration makes, and what each kind of user is, asked of the module."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, Group

from autotagger.permissions import (
    REVIEWERS_GROUP,
    can_change_gold_labelled_recipes,
    can_read_all_runs,
    is_reviewer,
)

pytestmark = pytest.mark.django_db


def test_the_migration_makes_the_reviewers_group_with_view_permissions_only() -> None:
    group = Group.objects.get(name=REVIEWERS_GROUP)

    codenames = sorted(group.permissions.values_list("content_type__app_label", "codename"))

    assert codenames == [
        ("tagging", "view_recipe"),
        ("tagging", "view_tagassignment"),
        ("tagging", "view_taggingjob"),
        ("tagging", "view_taggingrun"),
    ]


def test_a_reviewer_reads_every_run_and_curates_gold_labelled_recipes(reviewer: Any) -> None:
    assert is_reviewer(reviewer)
    assert can_read_all_runs(reviewer)
    assert can_change_gold_labelled_recipes(reviewer)


def test_an_api_client_is_no_reviewer_nor_curator(api_client_user: Any) -> None:
    assert not is_reviewer(api_client_user)
    assert not can_read_all_runs(api_client_user)
    assert not can_change_gold_labelled_recipes(api_client_user)


def test_an_inactive_reviewer_has_no_role(reviewer: Any) -> None:
    reviewer.is_active = False
    reviewer.save()

    assert not is_reviewer(reviewer)
    assert not can_read_all_runs(reviewer)


def test_an_anonymous_visitor_has_no_role() -> None:
    anonymous = AnonymousUser()

    assert not is_reviewer(anonymous)
    assert not can_read_all_runs(anonymous)
    assert not can_change_gold_labelled_recipes(anonymous)


def test_asking_whether_someone_is_a_reviewer_reads_the_database_once_a_request(
    reviewer: Any, django_user_model: Any, django_assert_num_queries: Any
) -> None:
    user = django_user_model.objects.get(pk=reviewer.pk)

    with django_assert_num_queries(1):
        answers = [is_reviewer(user), is_reviewer(user)]

    assert answers == [True, True]
