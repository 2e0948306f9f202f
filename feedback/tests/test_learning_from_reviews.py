"""Reviews teach the taggers: a review's gold labels reach the learned similarity tagger (one debounced refit for
a burst of reviews, on the worker) and the LLM prompt's few-shot examples (drawn from the refitted state)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from conftest import wait_for
from feedback.models import GoldLabel, GoldLabelSource
from feedback.services.reviews import TagDecision, recipe_review_submit
from feedback.tests.test_training import KIDS, NEW_KIDS, labelled, verdicts  # noqa: F401 - fixtures
from feedback.training import tagger_fit
from tagging.models import Recipe, RunStatus, TaggerState
from tagging.services.few_shot import few_shot_examples_select
from tagging.services.recipes import recipe_create, recipe_embed_for_tagging
from tagging.services.tagger_state import learned_model_active
from tagging.tests.conftest import TagAssignmentFactory, TaggingRunFactory
from taxonomy.models import Category, Tag

# A recipe nothing labelled yet, close to the kids' pizzas; a reviewer says what it is.
REVIEWED = ("Cheese and tomato pizza squares", ["pizza base", "mozzarella", "tomato sauce", "cheddar", "basil"])
BURST = [
    ("Fish finger sandwiches", ["fish fingers", "white bread", "ketchup"]),
    ("Cheesy mash", ["potatoes", "cheddar", "butter", "milk"]),
    ("Chocolate crispy cakes", ["rice crisps", "milk chocolate", "golden syrup"]),
]


def _examples_for(title: str, ingredients: list[str]) -> list[Any]:
    new = recipe_create(title=title, ingredients=ingredients, instructions="")
    recipe_embed_for_tagging(recipe=new, requests=[])
    return few_shot_examples_select(
        model=learned_model_active(),
        embedding=np.asarray(new.embedding, dtype=np.float32),
        category_slugs=["family_verdict"],
        exclude_recipe_id=new.pk,
        exclude_content_hash=new.content_hash,
        limit=5,
    )


@pytest.mark.django_db
def test_a_reviewed_recipe_becomes_a_few_shot_example_with_the_reviewers_tags(
    labelled: Category,  # noqa: F811 - the fixture imported above
    reviewer: Any,
) -> None:
    kids = Tag.objects.get(category=labelled, slug="kids")
    reviewed = recipe_create(title=REVIEWED[0], ingredients=REVIEWED[1], instructions="")
    recipe_review_submit(
        recipe=reviewed, run=None, decisions=[TagDecision(tag_id=kids.pk, decision="add")], reviewer=reviewer
    )
    tagger_fit()

    examples = _examples_for(*NEW_KIDS)

    assert examples[0].title == REVIEWED[0], "the reviewed recipe is the nearest labelled one"
    assert examples[0].tags == {"family_verdict": ("kids",)}


@pytest.mark.django_db
def test_a_review_that_corrects_an_imported_label_changes_the_example_shown(
    labelled: Category,  # noqa: F811 - the fixture imported above
    reviewer: Any,
) -> None:
    kids = Tag.objects.get(category=labelled, slug="kids")
    grown_ups = Tag.objects.get(category=labelled, slug="grown-ups")
    pizzas = Recipe.objects.get(title=KIDS[1][0])
    run: Any = TaggingRunFactory(recipe=pizzas, strategy="similarity", status=RunStatus.SUCCEEDED)
    TagAssignmentFactory(run=run, tag=kids, score=0.9, rank=1)
    recipe_review_submit(
        recipe=pizzas,
        run=run,
        decisions=[TagDecision(tag_id=kids.pk, decision="reject"), TagDecision(tag_id=grown_ups.pk, decision="add")],
        reviewer=reviewer,
    )
    tagger_fit()

    shown = {example.title: example.tags for example in _examples_for(*NEW_KIDS)}

    assert shown[KIDS[1][0]] == {"family_verdict": ("grown-ups",)}


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_burst_of_reviews_makes_one_refit_on_the_worker_that_learns_them_all(
    celery_worker_process: Any,
    labelled: Category,  # noqa: F811 - the fixture imported above
    reviewer: Any,
    settings: Any,
) -> None:
    # Long enough for the burst to fit inside it; each review pushes the refit back.
    settings.TAGGER_REFIT_DEBOUNCE_SECONDS = 3
    kids = Tag.objects.get(category=labelled, slug="kids")

    for title, ingredients in BURST:
        recipe = recipe_create(title=title, ingredients=ingredients, instructions="")
        recipe_review_submit(
            recipe=recipe, run=None, decisions=[TagDecision(tag_id=kids.pk, decision="add")], reviewer=reviewer
        )

    assert GoldLabel.objects.filter(source=GoldLabelSource.REVIEW).count() == 3
    assert wait_for(lambda: TaggerState.objects.filter(active=True).exists(), timeout=120)
    # The requests the burst superseded run too (their countdowns end): they must not fit again.
    assert not wait_for(lambda: TaggerState.objects.count() > 1, timeout=6)
    state = TaggerState.objects.get(active=True)
    assert state.fitted_on["labels"] == 24 + 3
    assert state.fitted_on["labelled_recipes"] == 27
