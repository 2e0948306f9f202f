"""Review leases: two reviewers never get the same recipe; a lease expires; submitting releases it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from conftest import reviewers_group
from feedback.models import Feedback, ReviewLease
from feedback.selectors import QueueFilters, review_queue
from feedback.services.leases import LeaseHeld, review_lease_take, review_next
from feedback.tests.review_helpers import signed_in, waiting_run
from taxonomy.models import Tag
from taxonomy.tests.conftest import CategoryFactory, TagFactory


def make_reviewer(name: str) -> Any:
    user = get_user_model().objects.create_user(username=name, password=f"{name}-password")
    user.groups.add(reviewers_group())
    return user


@pytest.fixture
def italian(db: None) -> Tag:
    return TagFactory(category=CategoryFactory(slug="cuisine"), slug="italian", name="Italian")


@pytest.mark.django_db
def test_next_gives_two_reviewers_different_recipes(italian: Tag) -> None:
    waiting_run({italian: 0.5}, title="Least sure")
    waiting_run({italian: 0.7}, title="Less sure")
    ana, ben = make_reviewer("ana"), make_reviewer("ben")

    first = review_next(filters=QueueFilters(), reviewer=ana)
    second = review_next(filters=QueueFilters(), reviewer=ben)

    assert first is not None
    assert second is not None
    assert (first.recipe.title, second.recipe.title) == ("Least sure", "Less sure")
    assert review_next(filters=QueueFilters(), reviewer=make_reviewer("cy")) is None


@pytest.mark.django_db
def test_the_queue_hides_a_recipe_another_reviewer_holds_but_not_ones_own(italian: Tag) -> None:
    run = waiting_run({italian: 0.5})
    ana, ben = make_reviewer("ana"), make_reviewer("ben")

    review_lease_take(recipe_id=run.recipe_id, reviewer=ana)

    assert [r.pk for r in review_queue(filters=QueueFilters(), reviewer=ana)] == [run.pk]
    assert list(review_queue(filters=QueueFilters(), reviewer=ben)) == []
    assert "1 by other reviewers right now" in signed_in(ben).get("/review/").content.decode()


@pytest.mark.django_db
def test_a_held_recipe_is_refused_to_another_reviewer_on_the_page_and_on_submit(italian: Tag) -> None:
    run = waiting_run({italian: 0.5})
    ana, ben = make_reviewer("ana"), make_reviewer("ben")
    review_lease_take(recipe_id=run.recipe_id, reviewer=ana)
    with pytest.raises(LeaseHeld):
        review_lease_take(recipe_id=run.recipe_id, reviewer=ben)

    page = signed_in(ben).get(f"/recipes/{run.recipe_id}/review/")
    submit = signed_in(ben).post(f"/recipes/{run.recipe_id}/review/", {"run": run.pk, f"tag-{italian.pk}": "accept"})

    assert "ana is reviewing this recipe" in page.content.decode()
    assert submit.status_code == 409
    assert not Feedback.objects.exists()
    assert ReviewLease.objects.get().reviewer == ana


@pytest.mark.django_db
def test_an_expired_lease_is_free_again(italian: Tag) -> None:
    run = waiting_run({italian: 0.5})
    ana, ben = make_reviewer("ana"), make_reviewer("ben")
    review_lease_take(recipe_id=run.recipe_id, reviewer=ana)
    ReviewLease.objects.update(
        taken_at=timezone.now() - timedelta(minutes=11), expires_at=timezone.now() - timedelta(minutes=1)
    )

    taken = review_next(filters=QueueFilters(), reviewer=ben)

    assert taken is not None
    assert taken.pk == run.pk
    assert ReviewLease.objects.get().reviewer == ben


@pytest.mark.django_db
@override_settings(REVIEW_LEASE_SECONDS=120)
def test_a_lease_lasts_the_configured_time(italian: Tag) -> None:
    run = waiting_run({italian: 0.5})

    lease = review_lease_take(recipe_id=run.recipe_id, reviewer=make_reviewer("ana"))

    assert lease.expires_at - lease.taken_at == timedelta(seconds=120)


@pytest.mark.django_db
def test_taking_a_recipe_gives_back_the_one_the_reviewer_held(italian: Tag) -> None:
    first, second = waiting_run({italian: 0.5}, title="First"), waiting_run({italian: 0.6}, title="Second")
    ana = make_reviewer("ana")
    review_lease_take(recipe_id=first.recipe_id, reviewer=ana)

    review_lease_take(recipe_id=second.recipe_id, reviewer=ana)

    assert list(ReviewLease.objects.values_list("recipe_id", flat=True)) == [second.recipe_id]


@pytest.mark.django_db
def test_skip_moves_on_to_the_next_least_sure_recipe(italian: Tag) -> None:
    first, second = waiting_run({italian: 0.5}, title="First"), waiting_run({italian: 0.6}, title="Second")
    browser = signed_in(make_reviewer("ana"))

    response = browser.get(f"/review/next?skip={first.recipe_id}")

    assert response["Location"] == f"/recipes/{second.recipe_id}/review/"
    assert list(ReviewLease.objects.values_list("recipe_id", flat=True)) == [second.recipe_id]


@pytest.mark.django_db
def test_submitting_a_review_releases_the_lease(italian: Tag) -> None:
    run = waiting_run({italian: 0.5})
    ana = make_reviewer("ana")
    browser = signed_in(ana)
    browser.get(f"/recipes/{run.recipe_id}/review/")
    assert ReviewLease.objects.filter(recipe=run.recipe, reviewer=ana).exists()

    browser.post(f"/recipes/{run.recipe_id}/review/", {"run": run.pk, f"tag-{italian.pk}": "accept"})

    assert not ReviewLease.objects.exists()


def _race(workers: list[Callable[[], Any]]) -> list[Any]:
    """Run each worker in its own thread (and database connection), all released at once."""
    barrier = threading.Barrier(len(workers))
    results: list[Any] = [None] * len(workers)

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = workers[index]()
        except Exception as exc:  # the test reads what each one got
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


@pytest.mark.django_db(transaction=True)
def test_reviewers_asking_for_next_at_the_same_moment_never_get_the_same_recipe() -> None:
    tag = TagFactory(category=CategoryFactory(slug="cuisine"), slug="italian")
    for n in range(6):
        waiting_run({tag: 0.5 + n / 100}, title=f"Recipe {n}")
    reviewers = [make_reviewer(f"reviewer{n}") for n in range(6)]

    results = _race([lambda r=r: review_next(filters=QueueFilters(), reviewer=r) for r in reviewers])

    recipes = [run.recipe_id for run in results]
    assert len(set(recipes)) == 6
    assert ReviewLease.objects.count() == 6


@pytest.mark.django_db(transaction=True)
def test_only_one_of_several_reviewers_racing_for_one_recipe_gets_it() -> None:
    tag = TagFactory(category=CategoryFactory(slug="cuisine"), slug="italian")
    run = waiting_run({tag: 0.5})
    reviewers = [make_reviewer(f"reviewer{n}") for n in range(5)]

    results = _race([lambda r=r: review_lease_take(recipe_id=run.recipe_id, reviewer=r) for r in reviewers])

    assert sum(isinstance(result, ReviewLease) for result in results) == 1
    assert sum(isinstance(result, LeaseHeld) for result in results) == 4
    assert ReviewLease.objects.count() == 1


@pytest.mark.django_db
def test_a_refused_review_keeps_the_reviewers_lease(italian: Tag) -> None:
    run = waiting_run({italian: 0.5})
    ana = make_reviewer("ana")
    browser = signed_in(ana)
    browser.get(f"/recipes/{run.recipe_id}/review/")

    response = browser.post(f"/recipes/{run.recipe_id}/review/", {"run": run.pk})

    assert response.status_code == 400
    assert ReviewLease.objects.get().reviewer == ana
