"""The feedback page (/feedback/): acceptance per category, strategy, prompt version and tag as bars and tables,
and the latest learning curves; for staff and reviewers."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from feedback.evaluation.replay import Acquisition, CurvePoint, LearningCurveResult
from feedback.services.learning_curves import learning_curve_store
from feedback.tests.test_acceptance import reviewed_run
from taxonomy.models import Category

pytestmark = pytest.mark.django_db

URL = "/feedback/"


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _curve(*, cv_f1: float | None = 0.7, acquisition: Acquisition = "margin") -> LearningCurveResult:
    return LearningCurveResult(
        recipes=500,
        held_out=100,
        pool=400,
        batch=100,
        limit=400,
        k=3,
        seeds=(0, 1),
        aggregate="min",
        diverse=False,
        points=[
            CurvePoint(reviews=100, uncertainty_f1=0.5, random_f1=0.5, random_f1_runs=(0.49, 0.51)),
            CurvePoint(reviews=200, uncertainty_f1=0.62, random_f1=0.57, random_f1_runs=(0.56, 0.58)),
            CurvePoint(reviews=400, uncertainty_f1=0.69, random_f1=0.64, random_f1_runs=(0.63, 0.65)),
        ],
        cv_f1=cv_f1,
        cv_folds=5,
        acquisition=acquisition,
    )


def test_it_sends_anonymous_visitors_to_log_in() -> None:
    response = Client().get(URL)

    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_it_refuses_users_who_are_neither_staff_nor_reviewers(api_client_user: Any) -> None:
    assert _client(api_client_user).get(URL).status_code == 403


def test_reviewers_and_staff_who_are_not_superusers_see_it(reviewer: Any, django_user_model: Any) -> None:
    clerk = django_user_model.objects.create_user(username="clerk", password="clerk-password", is_staff=True)

    assert _client(reviewer).get(URL).status_code == 200
    assert _client(clerk).get(URL).status_code == 200


def test_with_nothing_reviewed_or_replayed_it_says_so(reviewer: Any) -> None:
    page = _client(reviewer).get(URL).content.decode()

    assert "No learning curve yet" in page
    assert page.count("No reviews yet") == 4
    assert 'class="acceptance-chart"' not in page
    assert 'class="curve-uncertainty"' not in page


def test_it_draws_a_bar_per_group_at_its_acceptance_rate(cuisine: Category, reviewer: Any) -> None:
    italian, mexican = cuisine.tags.order_by("slug")
    reviewed_run(strategy="llm", decisions={italian: "accept", mexican: "reject"}, reviewer=reviewer)
    reviewed_run(strategy="similarity", decisions={italian: "accept"}, reviewer=reviewer)

    page = _client(reviewer).get(URL).content.decode()

    charts = dict(re.findall(r'<svg class="acceptance-chart" data-by="(\w+)"(.*?)</svg>', page, flags=re.S))
    assert set(charts) == {"category", "strategy", "tag"}, "no prompt version chart: no run had one"

    def bars(by: str) -> dict[str, str]:
        return dict(re.findall(r'data-key="([^"]+)" data-rate="([^"]*)"', charts[by]))

    assert bars("category") == {"cuisine": "0.667"}
    assert bars("strategy") == {"llm": "0.500", "similarity": "1.000"}
    assert bars("tag") == {"cuisine/italian": "1.000", "cuisine/mexican": "0.000"}
    # The bar of a rate of 1 spans the whole track (300 units), half of it for 0.5.
    assert 'width="300.0"' in charts["strategy"]
    assert 'width="150.0"' in charts["strategy"]
    assert "<td>cuisine/mexican</td>" in page


def test_it_draws_the_latest_learning_curve_with_both_orders_and_the_cross_validated_line(staff: Any) -> None:
    learning_curve_store(dataset="themealdb", curve=_curve(cv_f1=0.5))
    learning_curve_store(dataset="themealdb", curve=_curve(cv_f1=0.7))

    page = _client(staff).get(URL).content.decode()

    assert page.count('class="curve-uncertainty"') == 1, "only the latest curve of a dataset"
    uncertainty = re.search(r'class="curve-uncertainty" points="([^"]+)"', page)
    random = re.search(r'class="curve-random" points="([^"]+)"', page)
    assert uncertainty
    assert random
    ys = [float(pair.split(",")[1]) for pair in uncertainty.group(1).split()]
    xs = [float(pair.split(",")[0]) for pair in uncertainty.group(1).split()]
    assert len(ys) == 3
    assert ys[0] > ys[1] > ys[2], "F1 rises: the line climbs (SVG y grows downwards)"
    assert xs[0] < xs[1] < xs[2]
    assert random.group(1) != uncertainty.group(1)
    assert "Cross-validated F1 on all labels: 0.700" in page
    assert "F1 0.690 after 400 reviews" in page
    assert "F1 rises with feedback" in page


def test_the_caption_says_how_the_least_sure_recipes_were_chosen(staff: Any) -> None:
    learning_curve_store(dataset="themealdb", curve=_curve())
    learning_curve_store(dataset="archanas_kitchen", curve=_curve(acquisition="rotation"))

    page = _client(staff).get(URL).content.decode()

    assert "least sure first (min margin)" in page
    assert "least sure first (rotation)" in page
