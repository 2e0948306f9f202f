"""`manage.py learning_curve`: this instance's gold labels replayed as reviews, the curve printed and stored."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from feedback.models import LearningCurve
from feedback.services.learning_curves import GOLD_LABELS
from feedback.tests.test_training import labelled, verdicts  # noqa: F401 - fixtures
from taxonomy.models import Category

pytestmark = pytest.mark.django_db


def test_it_replays_the_gold_labels_and_stores_the_curve(labelled: Category) -> None:  # noqa: F811
    out = StringIO()

    options = ["--batch", "8", "--limit", "14", "--seeds", "0", "--cv-folds", "0"]
    call_command("learning_curve", *options, stdout=out, stderr=StringIO())

    curve = LearningCurve.objects.get()
    assert curve.dataset == GOLD_LABELS
    assert curve.recipes == 24
    assert [p["reviews"] for p in curve.result["points"]] == [8, 14]
    assert all(0.0 <= p["uncertainty_f1"] <= 1.0 for p in curve.result["points"])
    assert curve.cv_f1 is None
    printed = out.getvalue()
    assert "micro-F1 on" in printed
    assert "F1 rises with feedback" in printed
    assert f"Stored as learning curve {curve.pk}" in printed


def test_without_gold_labels_it_says_there_is_nothing_to_replay(db: None) -> None:
    with pytest.raises(CommandError, match="no gold labels"):
        call_command("learning_curve", stdout=StringIO(), stderr=StringIO())

    assert not LearningCurve.objects.exists()


def test_it_refuses_seeds_that_are_not_numbers(labelled: Category) -> None:  # noqa: F811
    with pytest.raises(CommandError, match="--seeds"):
        call_command("learning_curve", "--seeds", "one,two", stdout=StringIO(), stderr=StringIO())
