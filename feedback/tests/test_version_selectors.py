"""feedback.version_selectors: the numbers of a prompt version (evaluations, usage, judged precision, acceptance)
and its prompt's versions side by side, computed on hand-made rows in a fixed number of queries."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from feedback.services.reviews import TagDecision, recipe_review_submit
from feedback.tests.prompt_versions import evaluation, judged, llm_usage, tagging_run, versions_of
from feedback.version_selectors import prompt_version_by_label, prompt_version_numbers, prompt_versions_overview
from tagging.models import RunStatus
from taxonomy.models import Category, Tag
from taxonomy.tests.conftest import CategoryFactory, TagFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def tags(cuisine: Category) -> dict[str, Tag]:
    course = CategoryFactory(slug="course")
    return {tag.slug: tag for tag in cuisine.tags.all()} | {"main": TagFactory(category=course, slug="main")}


def test_it_lists_the_versions_evaluation_runs_newest_first_with_their_model_usage() -> None:
    v1, v2 = versions_of("trial", 2)
    older = evaluation(
        v2, f1=0.6, categories={"cuisine": 0.7}, llm=llm_usage(answered=10, prompt=9000, completion=300, cost=0.02)
    )
    newer = evaluation(
        v2, f1=0.65, categories={"cuisine": 0.75}, llm=llm_usage(answered=30, prompt=30000, completion=900, cost=0.04)
    )
    evaluation(v1, f1=0.5, categories={"cuisine": 0.55})

    numbers = prompt_version_numbers(version=v2)

    assert [e.run_id for e in numbers.evaluations] == [newer.pk, older.pk]
    assert numbers.evaluations[0].prompt_tokens_per_recipe == 1000
    assert numbers.evaluations[0].cost_per_recipe == pytest.approx(0.04 / 30)
    usage = numbers.evaluation_usage
    assert usage is not None
    assert (usage.runs, usage.answered) == (2, 40)
    assert usage.prompt_tokens_per_recipe == 39000 / 40
    assert usage.completion_tokens_per_recipe == 1200 / 40
    assert usage.cost_per_recipe == pytest.approx(0.06 / 40)


def test_it_draws_a_series_per_dataset_strategy_k_and_source_with_each_versions_latest_run_in_version_order() -> None:
    v1, v2, v3 = versions_of("trial", 3)
    evaluation(v2, f1=0.6, categories={"cuisine": 0.7, "course": 0.5})
    evaluation(v1, f1=0.4, categories={"cuisine": 0.45})
    latest_v2 = evaluation(v2, f1=0.62, categories={"cuisine": 0.72, "course": 0.52})
    other = evaluation(v3, f1=0.3, categories={"diet": 0.3}, dataset="basedcooking", strategy="hybrid")
    evaluation(versions_of("other-prompt", 1)[0], f1=0.9, categories={"cuisine": 0.9})
    other_k = evaluation(v1, f1=0.35, categories={"cuisine": 0.4}, k=5)
    other_source = evaluation(v1, f1=0.45, categories={"cuisine": 0.5}, source="openai")

    series = prompt_version_numbers(version=v1).series

    assert [(s.dataset, s.strategy, s.k, s.source) for s in series] == [
        ("themealdb", "llm", 3, "default"),
        ("basedcooking", "hybrid", 3, "default"),
        ("themealdb", "llm", 3, "openai"),
        ("themealdb", "llm", 5, "default"),
    ]
    first = series[0]
    assert [(r.version_number, r.overall_f1) for r in first.runs] == [(1, 0.4), (2, 0.62)]
    assert first.runs[1].run_id == latest_v2.pk
    assert first.categories == ["cuisine", "course"]
    assert [r.category_f1.get("course") for r in first.runs] == [None, 0.52]
    assert [r.run_id for r in series[1].runs] == [other.pk]
    assert [r.run_id for r in series[2].runs] == [other_source.pk]
    assert [r.run_id for r in series[3].runs] == [other_k.pk]


def test_it_counts_the_tokens_and_cost_per_recipe_of_the_succeeded_runs_that_asked_the_model() -> None:
    v1, v2 = versions_of("trial", 2)
    tagging_run(v2, input_tokens=1000, output_tokens=40, cost=0.002)
    tagging_run(v2, input_tokens=1200, output_tokens=60, cost=0.004)
    tagging_run(v2, cache_hit=True, llm_calls=0)
    tagging_run(v2, status=RunStatus.FAILED, input_tokens=99999, cost=9.0)
    tagging_run(v1, input_tokens=5, output_tokens=5, cost=1.0)

    usage = prompt_version_numbers(version=v2).usage

    assert (usage.runs, usage.cache_hits, usage.called) == (3, 1, 2)
    assert usage.input_tokens_per_recipe == 1100
    assert usage.output_tokens_per_recipe == 50
    assert usage.cost_per_recipe == pytest.approx(0.003)


def test_it_counts_a_relevant_tag_one_and_a_partly_relevant_one_half_in_judged_precision(tags: dict[str, Tag]) -> None:
    v1, v2 = versions_of("trial", 2)
    first = tagging_run(v2, tags=(tags["italian"], tags["main"]))
    second = tagging_run(v2, tags=(tags["mexican"],))
    judged(first, {tags["italian"]: "relevant", tags["main"]: "partly"})
    judged(second, {tags["mexican"]: "not_relevant"})
    elsewhere = tagging_run(v1, tags=(tags["italian"],))
    judged(elsewhere, {tags["italian"]: "not_relevant"})

    numbers = prompt_version_numbers(version=v2)

    assert (numbers.judged.judged, numbers.judged.precision) == (3, pytest.approx(1.5 / 3))
    by_category = {row.key: (row.judged, row.precision) for row in numbers.judged_by_category}
    assert by_category == {"course": (1, 0.5), "cuisine": (2, 0.5)}


def test_it_counts_the_reviewers_answers_to_the_versions_tags_per_category(tags: dict[str, Tag], reviewer: Any) -> None:
    v1, v2 = versions_of("trial", 2)
    run = tagging_run(v2, tags=(tags["italian"], tags["mexican"], tags["main"]))
    decisions = [
        TagDecision(tag_id=tags["italian"].pk, decision="accept"),
        TagDecision(tag_id=tags["mexican"].pk, decision="reject"),
        TagDecision(tag_id=tags["main"].pk, decision="accept"),
    ]
    recipe_review_submit(recipe=run.recipe, run=run, decisions=decisions, reviewer=reviewer)

    numbers = prompt_version_numbers(version=v2)

    rows = {a.key: (a.accepted, a.rejected, a.rate) for a in numbers.acceptance_by_category}
    assert rows == {"cuisine": (1, 1, 0.5), "course": (1, 0, 1.0)}
    assert numbers.acceptance is not None
    assert (numbers.acceptance.reviewed, numbers.acceptance.rate) == (3, pytest.approx(2 / 3))
    assert prompt_version_numbers(version=v1).acceptance is None


def test_a_version_nothing_used_has_no_numbers() -> None:
    (version,) = versions_of("trial", 1)

    numbers = prompt_version_numbers(version=version)

    assert (numbers.evaluations, numbers.series, numbers.judged_by_category, numbers.acceptance_by_category) == (
        [],
        [],
        [],
        [],
    )
    assert numbers.evaluation_usage is None
    assert (numbers.usage.runs, numbers.usage.cost_per_recipe) == (0, None)
    assert numbers.judged.precision is None
    assert numbers.acceptance is None


def test_the_overview_puts_each_versions_headline_numbers_side_by_side(tags: dict[str, Tag], reviewer: Any) -> None:
    v1, v2 = versions_of("trial", 2)
    evaluation(v1, f1=0.4, categories={"cuisine": 0.45})
    latest = evaluation(v1, f1=0.5, categories={"cuisine": 0.55}, dataset="basedcooking")
    tagging_run(v2, input_tokens=800, output_tokens=20, cost=0.001)
    run = tagging_run(v2, tags=(tags["italian"],), input_tokens=1200, output_tokens=40, cost=0.003)
    judged(run, {tags["italian"]: "partly"})
    recipe_review_submit(
        recipe=run.recipe,
        run=run,
        decisions=[TagDecision(tag_id=tags["italian"].pk, decision="accept")],
        reviewer=reviewer,
    )

    overview = prompt_versions_overview(prompt=v1.prompt)

    first, second = overview.versions
    assert (first.version, second.version) == (v1, v2)
    assert first.latest_evaluation is not None
    assert first.latest_evaluation.run_id == latest.pk
    assert (first.usage.runs, first.judged, first.acceptance) == (0, None, None)
    assert second.evaluations == []
    assert (second.usage.called, second.usage.input_tokens_per_recipe, second.usage.cost_per_recipe) == (
        2,
        1000,
        pytest.approx(0.002),
    )
    assert second.judged is not None
    assert second.judged.precision == 0.5
    assert second.acceptance is not None
    assert (second.acceptance.accepted, second.acceptance.rate) == (1, 1.0)
    assert [(s.dataset, [r.version_number for r in s.runs]) for s in overview.series] == [
        ("basedcooking", [1]),
        ("themealdb", [1]),
    ]


def _queries(action: Any) -> int:
    with CaptureQueriesContext(connection) as captured:
        action()
    return len(captured)


def _busy_versions(count: int, tags: dict[str, Tag]) -> list[Any]:
    versions = versions_of(f"busy-{count}", count)
    for version in versions:
        evaluation(
            version, f1=0.5, categories={"cuisine": 0.5}, llm=llm_usage(answered=2, prompt=10, completion=2, cost=0.1)
        )
        run = tagging_run(version, tags=(tags["italian"],), input_tokens=10, cost=0.1)
        judged(run, {tags["italian"]: "relevant"})
    return versions


def test_it_reads_a_prompt_of_many_versions_in_as_many_queries_as_one_of_few(tags: dict[str, Tag]) -> None:
    few, many = _busy_versions(2, tags), _busy_versions(6, tags)

    overview_queries = [_queries(lambda v=v: prompt_versions_overview(prompt=v[0].prompt)) for v in (few, many)]
    version_queries = [_queries(lambda v=v: prompt_version_numbers(version=v[-1])) for v in (few, many)]

    # The versions, their evaluation runs, run usage, judgements and acceptance; a version also its judgements per
    # category.
    assert overview_queries == [5, 5]
    assert version_queries == [6, 6]


def test_it_finds_the_version_an_evaluation_run_names_by_its_label() -> None:
    _v1, v2 = versions_of("trial", 2)

    assert prompt_version_by_label(label="trial v2") == v2
    assert prompt_version_by_label(label="trial v9") is None
    assert prompt_version_by_label(label="trial") is None
