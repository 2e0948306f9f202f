"""feedback.services.reviews.recipe_review_submit: decisions become Feedback rows and gold labels together."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from feedback.models import Feedback, GoldLabel, GoldLabelSource
from feedback.services.reviews import ReviewError, TagDecision, recipe_review_submit
from feedback.tests.conftest import GoldLabelFactory
from prompts.models import PromptVersion
from tagging.models import RunStatus
from tagging.tests.conftest import RecipeFactory, TagAssignmentFactory, TaggingRunFactory
from taxonomy.models import Category, Tag
from taxonomy.tests.conftest import TagFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def tags(cuisine: Category) -> dict[str, Tag]:
    return {tag.slug: tag for tag in cuisine.tags.all()} | {"greek": TagFactory(category=cuisine, slug="greek")}


@pytest.fixture
def run(tags: dict[str, Tag]) -> Any:
    version = PromptVersion.objects.filter(prompt__name="tagging-default", number=1).first()
    run = TaggingRunFactory(
        recipe=RecipeFactory(),
        strategy="llm",
        status=RunStatus.SUCCEEDED,
        stats={"prompt_version_id": version.pk if version else None},
    )
    TagAssignmentFactory(run=run, tag=tags["italian"], score=0.9, rank=1)
    TagAssignmentFactory(run=run, tag=tags["mexican"], score=0.3, rank=2)
    return run


def labels_of(recipe: Any) -> dict[str, str]:
    return dict(GoldLabel.objects.filter(recipe=recipe).values_list("tag__slug", "source"))


def test_it_records_one_feedback_per_decision_with_what_the_run_said(
    run: Any, tags: dict[str, Tag], reviewer: Any
) -> None:
    decisions = [
        TagDecision(tag_id=tags["italian"].pk, decision="accept"),
        TagDecision(tag_id=tags["mexican"].pk, decision="reject"),
        TagDecision(tag_id=tags["greek"].pk, decision="add"),
    ]

    recipe_review_submit(recipe=run.recipe, run=run, decisions=decisions, reviewer=reviewer)

    rows = {f.tag.slug: f for f in Feedback.objects.select_related("tag")}
    assert {slug: (f.decision, f.score) for slug, f in rows.items()} == {
        "italian": ("accept", 0.9),
        "mexican": ("reject", 0.3),
        "greek": ("add", None),
    }
    assert {f.strategy for f in rows.values()} == {"llm"}
    assert {f.reviewer for f in rows.values()} == {reviewer}
    assert {f.run_id for f in rows.values()} == {run.pk}
    assert rows["italian"].prompt_version_id == run.stats["prompt_version_id"]


def test_it_makes_accepted_and_added_tags_review_labels_and_drops_rejected_ones(
    run: Any, tags: dict[str, Tag], reviewer: Any
) -> None:
    GoldLabelFactory(recipe=run.recipe, tag=tags["mexican"], source=GoldLabelSource.IMPORT)

    recipe_review_submit(
        recipe=run.recipe,
        run=run,
        decisions=[
            TagDecision(tag_id=tags["italian"].pk, decision="accept"),
            TagDecision(tag_id=tags["mexican"].pk, decision="reject"),
            TagDecision(tag_id=tags["greek"].pk, decision="add"),
        ],
        reviewer=reviewer,
    )

    assert labels_of(run.recipe) == {"italian": "review", "greek": "review"}


def test_it_keeps_an_imported_label_that_a_reviewer_accepts(run: Any, tags: dict[str, Tag], reviewer: Any) -> None:
    GoldLabelFactory(recipe=run.recipe, tag=tags["italian"], source=GoldLabelSource.IMPORT)

    recipe_review_submit(
        recipe=run.recipe,
        run=run,
        decisions=[TagDecision(tag_id=tags["italian"].pk, decision="accept")],
        reviewer=reviewer,
    )

    assert labels_of(run.recipe) == {"italian": "import"}


@pytest.mark.parametrize(
    ("decision", "tag_slug", "message"),
    [
        ("accept", "greek", "was not suggested by run"),
        ("reject", "greek", "was not suggested by run"),
        ("maybe", "italian", "Unknown decision 'maybe'"),
    ],
)
def test_it_refuses_a_bad_decision_and_stores_nothing(
    run: Any, tags: dict[str, Tag], reviewer: Any, decision: str, tag_slug: str, message: str
) -> None:
    decisions = [
        TagDecision(tag_id=tags["mexican"].pk, decision="reject"),
        TagDecision(tag_id=tags[tag_slug].pk, decision=decision),
    ]

    with pytest.raises(ReviewError, match=message):
        recipe_review_submit(recipe=run.recipe, run=run, decisions=decisions, reviewer=reviewer)

    assert Feedback.objects.count() == 0
    assert labels_of(run.recipe) == {}


def test_it_refuses_two_decisions_on_one_tag(run: Any, tags: dict[str, Tag], reviewer: Any) -> None:
    decisions = [TagDecision(tag_id=tags["italian"].pk, decision=d) for d in ("accept", "reject")]

    with pytest.raises(ReviewError, match="two decisions"):
        recipe_review_submit(recipe=run.recipe, run=run, decisions=decisions, reviewer=reviewer)


def test_it_refuses_an_inactive_tag_to_add(run: Any, tags: dict[str, Tag], reviewer: Any) -> None:
    Tag.objects.filter(pk=tags["greek"].pk).update(active=False)

    with pytest.raises(ReviewError, match="not an active tag"):
        recipe_review_submit(
            recipe=run.recipe,
            run=run,
            decisions=[TagDecision(tag_id=tags["greek"].pk, decision="add")],
            reviewer=reviewer,
        )


def test_it_refuses_a_run_of_another_recipe(run: Any, tags: dict[str, Tag], reviewer: Any) -> None:
    other = RecipeFactory(title="Tacos")

    with pytest.raises(ReviewError, match="tagged another recipe"):
        recipe_review_submit(
            recipe=other,
            run=run,
            decisions=[TagDecision(tag_id=tags["italian"].pk, decision="accept")],
            reviewer=reviewer,
        )


def test_it_refuses_an_empty_review(run: Any, reviewer: Any) -> None:
    with pytest.raises(ReviewError, match="at least one decision"):
        recipe_review_submit(recipe=run.recipe, run=run, decisions=[], reviewer=reviewer)


def test_it_lets_a_recipe_without_a_run_get_added_tags(tags: dict[str, Tag], reviewer: Any) -> None:
    recipe = RecipeFactory()

    recipe_review_submit(
        recipe=recipe, run=None, decisions=[TagDecision(tag_id=tags["greek"].pk, decision="add")], reviewer=reviewer
    )

    assert labels_of(recipe) == {"greek": "review"}
    assert Feedback.objects.get().strategy == ""


def test_it_asks_for_a_refit_once_committed(
    run: Any, tags: dict[str, Tag], reviewer: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        recipe_review_submit(
            recipe=run.recipe,
            run=run,
            decisions=[TagDecision(tag_id=tags["italian"].pk, decision="accept")],
            reviewer=reviewer,
        )

    assert len(callbacks) == 1


def test_it_asks_for_no_refit_when_the_labels_did_not_change(
    run: Any, tags: dict[str, Tag], reviewer: Any, django_capture_on_commit_callbacks: Any
) -> None:
    GoldLabelFactory(recipe=run.recipe, tag=tags["italian"], source=GoldLabelSource.REVIEW)

    with django_capture_on_commit_callbacks() as callbacks:
        recipe_review_submit(
            recipe=run.recipe,
            run=run,
            decisions=[TagDecision(tag_id=tags["italian"].pk, decision="accept")],
            reviewer=reviewer,
        )

    assert callbacks == []


def test_it_needs_a_bounded_number_of_queries(run: Any, tags: dict[str, Tag], reviewer: Any) -> None:
    decisions = [
        TagDecision(tag_id=tags["italian"].pk, decision="accept"),
        TagDecision(tag_id=tags["mexican"].pk, decision="reject"),
        TagDecision(tag_id=tags["greek"].pk, decision="add"),
    ]

    with CaptureQueriesContext(connection) as queries:
        recipe_review_submit(recipe=run.recipe, run=run, decisions=decisions, reviewer=reviewer)

    assert len(queries) <= 12
