"""feedback.training: the similarity tagger learns from gold labels: fitting, storing (tagging.services.tagger_state),
using, and refitting on the worker."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection, transaction

from conftest import wait_for
from feedback.models import GoldLabel, GoldLabelSource
from feedback.tests.conftest import GoldLabelFactory
from feedback.training import tagger_fit, tagger_fit_is_current, tagger_refit
from tagging import learning
from tagging.models import Recipe, TaggerState, TrainingExample
from tagging.services.config import TaggingConfig
from tagging.services.recipes import recipe_create
from tagging.services.runs import recipe_tag
from tagging.services.tagger_state import learned_model_active
from tagging.stacking import FEATURES
from taxonomy.models import Category, Tag
from taxonomy.tests.conftest import CategoryFactory, TagFactory

# A verdict no tag description can reveal: only labelled examples teach it.
KIDS = [
    ("Macaroni cheese bake", ["macaroni", "cheddar", "milk", "butter"]),
    ("Mini cheese pizzas", ["pizza dough", "mozzarella", "tomato sauce"]),
    ("Chocolate banana pancakes", ["flour", "banana", "chocolate chips", "milk"]),
    ("Fish fingers with peas", ["white fish", "breadcrumbs", "peas"]),
    ("Cheesy pasta shells", ["pasta shells", "cheddar", "cream"]),
    ("Strawberry yoghurt pots", ["strawberries", "yoghurt", "honey"]),
    ("Sweet corn fritters", ["sweetcorn", "flour", "egg"]),
    ("Chicken nuggets", ["chicken breast", "breadcrumbs", "egg"]),
    ("Jam sandwiches", ["white bread", "strawberry jam", "butter"]),
    ("Vanilla cupcakes with sprinkles", ["flour", "sugar", "butter", "sprinkles"]),
    ("Buttered noodles", ["egg noodles", "butter", "parmesan"]),
    ("Banana milkshake", ["banana", "milk", "vanilla ice cream"]),
]
GROWN_UPS = [
    ("Anchovy and caper puttanesca", ["anchovies", "capers", "olives", "chilli flakes"]),
    ("Devilled kidneys", ["lamb kidneys", "mustard", "cayenne"]),
    ("Bitter radicchio salad", ["radicchio", "blue cheese", "walnuts"]),
    ("Vindaloo with extra chillies", ["pork shoulder", "dried chillies", "vinegar"]),
    ("Oysters with shallot vinegar", ["oysters", "shallots", "red wine vinegar"]),
    ("Black coffee granita", ["espresso", "sugar"]),
    ("Steak tartare", ["beef fillet", "capers", "raw egg yolk", "cornichons"]),
    ("Negroni poached pears", ["pears", "gin", "campari", "vermouth"]),
    ("Pickled herring", ["herring", "vinegar", "onion", "dill"]),
    ("Liver and bacon", ["calf liver", "bacon", "onions"]),
    ("Blue cheese and port soufflé", ["stilton", "port", "eggs"]),
    ("Szechuan peppercorn chicken", ["chicken thighs", "szechuan peppercorns", "dried chillies"]),
]
NEW_KIDS = ("Cheese and tomato pizza slices", ["pizza base", "mozzarella", "tomato sauce", "cheddar"])
NEW_GROWN_UPS = ("Anchovy toast with capers", ["anchovies", "capers", "sourdough", "chilli flakes"])


@pytest.fixture
def verdicts(db: None) -> Category:
    category = CategoryFactory(name="Family verdict", slug="family_verdict", default_max_tags=1)
    TagFactory(category=category, name="Kids love it", slug="kids", description="")
    TagFactory(category=category, name="Grown-ups only", slug="grown-ups", description="")
    return category


def _label(recipes: list[tuple[str, list[str]]], tag: Tag) -> None:
    for title, ingredients in recipes:
        recipe = recipe_create(title=title, ingredients=ingredients, instructions="")
        GoldLabelFactory(recipe=recipe, tag=tag, source=GoldLabelSource.IMPORT)


@pytest.fixture
def labelled(verdicts: Category) -> Category:
    _label(KIDS, Tag.objects.get(category=verdicts, slug="kids"))
    _label(GROWN_UPS, Tag.objects.get(category=verdicts, slug="grown-ups"))
    return verdicts


def _verdict(title: str, ingredients: list[str], **config: Any) -> list[str]:
    recipe = recipe_create(title=title, ingredients=ingredients, instructions="")
    run = recipe_tag(recipe=recipe, config=TaggingConfig(categories=("family_verdict",), k=1, **config))
    return list(run.assignments.order_by("rank").values_list("tag__slug", flat=True))


def test_it_stays_zero_shot_without_gold_labels(verdicts: Category) -> None:
    state = tagger_fit()

    assert state is None
    assert learned_model_active() is None
    assert TaggerState.objects.count() == 0


def test_it_learns_what_no_description_says_from_labelled_recipes(labelled: Category) -> None:
    before = [_verdict(*NEW_KIDS), _verdict(*NEW_GROWN_UPS)]

    tagger_fit()

    assert before != [["kids"], ["grown-ups"]]
    assert _verdict(*NEW_KIDS) == ["kids"]
    assert _verdict(*NEW_GROWN_UPS) == ["grown-ups"]


def test_a_learned_tag_names_the_labelled_recipes_that_voted_for_it_and_its_signals_shares(
    labelled: Category,
) -> None:
    tagger_fit()
    recipe = recipe_create(title=NEW_KIDS[0], ingredients=NEW_KIDS[1], instructions="")

    run = recipe_tag(recipe=recipe, config=TaggingConfig(categories=("family_verdict",), k=1))

    assignment = run.assignments.get()
    assert assignment.tag.slug == "kids"
    evidence = assignment.evidence
    assert evidence["decided_by"] == "learned"
    assert evidence["rule"] == "no rule"
    assert 0 < len(evidence["neighbours"]) <= 5
    kids = {
        recipe_id: title
        for recipe_id, title in GoldLabel.objects.filter(tag=assignment.tag).values_list("recipe_id", "recipe__title")
    }
    for neighbour in evidence["neighbours"]:
        assert kids[neighbour["recipe_id"]] == neighbour["title"]
    assert evidence["signals"]
    assert set(evidence["signals"]) <= set(FEATURES)
    assert sum(abs(share) for share in evidence["signals"].values()) == pytest.approx(1.0, abs=0.01)


def test_it_records_what_it_was_fitted_on_and_the_fitted_thresholds(labelled: Category) -> None:
    state = tagger_fit()

    assert state is not None
    assert state.active
    assert state.fitted_on["labels"] == 24
    assert state.fitted_on["labelled_recipes"] == 24
    assert state.fitted_on["last_label_id"] == GoldLabel.objects.order_by("-id").first().pk
    parameters = state.parameters["family_verdict"]
    assert sorted(parameters["tag_slugs"]) == ["grown-ups", "kids"]
    assert 0.0 < parameters["threshold"] < 1.0
    assert parameters["labelled"] == 24
    assert TrainingExample.objects.filter(state=state).count() == 24


def test_it_uses_the_fitted_threshold_unless_the_request_overrides_it(labelled: Category) -> None:
    state = tagger_fit()
    assert state is not None

    strict = _verdict(*NEW_KIDS, threshold=0.999999)
    lenient = _verdict(*NEW_KIDS, threshold=0.0)

    assert strict == []
    assert lenient == ["kids"]


def test_it_fits_each_category_to_its_precision_floor_and_stores_a_calibration(labelled: Category) -> None:
    labelled.precision_floor = 0.9
    labelled.save(update_fields=["precision_floor"])

    state = tagger_fit()

    assert state is not None
    parameters = state.parameters["family_verdict"]
    assert parameters["precision_floor"] == 0.9
    assert state.fitted_on["precision_floors"]["family_verdict"] == 0.9
    assert parameters["calibration"]["method"] in ("identity", "platt", "isotonic")
    loaded = learned_model_active()
    assert loaded is not None
    assert loaded.categories["family_verdict"].calibration.method == parameters["calibration"]["method"]


def test_a_changed_precision_floor_asks_for_a_refit(labelled: Category) -> None:
    tagger_fit()
    assert tagger_fit_is_current()

    labelled.precision_floor = 0.6
    labelled.save(update_fields=["precision_floor"])

    assert not tagger_fit_is_current()
    state = tagger_refit()
    assert state is not None
    assert state.parameters["family_verdict"]["precision_floor"] == 0.6
    assert tagger_fit_is_current()


def test_a_new_fit_retires_the_previous_state_and_its_examples(labelled: Category) -> None:
    first = tagger_fit()
    GoldLabel.objects.filter(recipe__title="Jam sandwiches").delete()

    second = tagger_fit()

    assert first is not None
    assert second is not None
    first.refresh_from_db()
    assert not first.active
    assert second.active
    assert not TrainingExample.objects.filter(state=first).exists()
    assert TrainingExample.objects.filter(state=second).count() == 23


def test_a_refit_is_skipped_when_the_state_already_reflects_the_labels(labelled: Category) -> None:
    tagger_fit()
    assert tagger_fit_is_current()

    assert tagger_refit() is None
    assert TaggerState.objects.count() == 1

    GoldLabel.objects.filter(recipe__title="Jam sandwiches").delete()
    assert not tagger_fit_is_current()
    assert tagger_refit() is not None


def test_a_state_fitted_by_an_older_release_is_zero_shot_until_the_periodic_check_refits_it(
    labelled: Category,
) -> None:
    old = tagger_fit()
    assert old is not None
    old.fitted_on = {key: value for key, value in old.fitted_on.items() if key != "version"}  # as release 1 stored it
    old.save(update_fields=["fitted_on"])

    assert learned_model_active() is None
    assert not tagger_fit_is_current()
    new = tagger_refit()

    assert new is not None
    assert new.fitted_on["version"] == learning.MODEL_VERSION
    assert tagger_fit_is_current()
    assert learned_model_active() is not None


def test_a_state_fitted_by_an_incompatible_release_leaves_the_tagger_zero_shot(labelled: Category) -> None:
    zero_shot = _verdict(*NEW_GROWN_UPS)
    state = tagger_fit()
    assert state is not None
    assert _verdict(*NEW_GROWN_UPS) != zero_shot, "the premise: the fitted state changes this verdict"
    state.fitted_on = {**state.fitted_on, "version": learning.MODEL_VERSION + 1}
    state.save(update_fields=["fitted_on"])

    assert learned_model_active() is None
    assert _verdict(*NEW_GROWN_UPS) == zero_shot
    assert not tagger_fit_is_current()


def test_a_refit_request_superseded_by_a_later_one_does_nothing(labelled: Category) -> None:
    from autotagger.redis import redis_client
    from feedback.training import REFIT_KEY

    client = redis_client()
    client.set(REFIT_KEY, "2000.0")

    result = tagger_refit(requested_at=1000.0)

    client.delete(REFIT_KEY)
    assert result is None
    assert TaggerState.objects.count() == 0


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_the_worker_refits_after_gold_labels_are_imported(
    celery_worker_process: Any, verdicts: Category, settings: Any
) -> None:
    from feedback.services.imports import recipes_import

    settings.TAGGER_REFIT_DEBOUNCE_SECONDS = 0.5
    examples = [(t, ing, "kids") for t, ing in KIDS] + [(t, ing, "grown-ups") for t, ing in GROWN_UPS]
    lines = [
        json.dumps({"id": str(i), "title": title, "ingredients": ingredients, "tags": {"family_verdict": [verdict]}})
        for i, (title, ingredients, verdict) in enumerate(examples)
    ]

    with transaction.atomic():
        recipes_import(lines=lines, source="verdicts", labeled=True, create_taxonomy=False, mapping=None)

    assert wait_for(lambda: TaggerState.objects.filter(active=True).exists(), timeout=90)
    state = TaggerState.objects.get(active=True)
    assert state.fitted_on["labels"] == 24
    assert Recipe.objects.filter(source="verdicts").count() == 24


@pytest.mark.django_db
def test_labelled_recipes_are_searched_through_an_hnsw_index_for_cosine_distance() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tablename, indexdef FROM pg_indexes WHERE indexname = %s", ["tagging_example_embedding_hnsw"]
        )
        rows = cursor.fetchall()

    assert len(rows) == 1
    table, definition = rows[0]
    assert table == "tagging_trainingexample"
    assert "USING hnsw" in definition
    assert "(embedding vector_cosine_ops)" in definition


def test_a_learned_run_records_how_unsure_the_tagger_was_and_a_zero_shot_one_does_not(labelled: Category) -> None:
    zero_shot = recipe_tag(
        recipe=recipe_create(title=NEW_KIDS[0], ingredients=NEW_KIDS[1], instructions=""),
        config=TaggingConfig(categories=("family_verdict",), k=1),
    )
    state = tagger_fit()
    assert state is not None
    threshold = state.parameters["family_verdict"]["threshold"]

    learned = recipe_tag(
        recipe=recipe_create(title=NEW_GROWN_UPS[0], ingredients=NEW_GROWN_UPS[1], instructions=""),
        config=TaggingConfig(categories=("family_verdict",), k=1),
    )

    assert "uncertainty_margin" not in zero_shot.stats
    margin = learned.stats["uncertainty_margin"]
    assert 0.0 <= margin <= max(threshold, 1 - threshold)
