"""Fast mode and what was learned and measured: a learned state per embedding model, and `evaluate` printing
the fast mode's quality per category beside the full model's."""

from __future__ import annotations

import re
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from feedback.models import EvaluationRun
from feedback.tests.test_evaluation import _recipes, _write
from feedback.tests.test_training import KIDS, NEW_KIDS, _label, _verdict, verdicts  # noqa: F401
from feedback.training import fast_mode_refresh, tagger_fit, tagger_fit_is_current
from tagging.models import TaggerState, TrainingExample
from tagging.services.tagger_state import learned_model_active
from taxonomy.models import Category, Tag, TagEmbedding

pytestmark = pytest.mark.django_db

FAST_MODEL = f"{settings.EMBEDDING_MODEL}/model2vec"


@pytest.fixture
def kids_labelled(verdicts: Category) -> Category:  # noqa: F811
    _label(KIDS, Tag.objects.get(category=verdicts, slug="kids"))
    return verdicts


def test_a_fit_keeps_one_active_state_per_embedding_model(fast_mode: Path, kids_labelled: Category) -> None:
    state = tagger_fit()

    active = dict(TaggerState.objects.filter(active=True).values_list("embedding_model", "id"))
    assert state is not None
    assert active == {settings.EMBEDDING_MODEL: state.pk, FAST_MODEL: active[FAST_MODEL]}
    assert learned_model_active(mode="fast") is not None
    assert tagger_fit_is_current()


def test_the_fast_state_votes_with_fast_vectors_of_the_labelled_recipes(
    fast_mode: Path, kids_labelled: Category
) -> None:
    tagger_fit()

    full = TaggerState.objects.get(active=True, embedding_model=settings.EMBEDDING_MODEL)
    fast = TaggerState.objects.get(active=True, embedding_model=FAST_MODEL)
    by_recipe = {
        (example.state_id, example.recipe_id): np.asarray(example.embedding)
        for example in TrainingExample.objects.filter(state__in=[full, fast])
    }
    recipe_ids = {recipe_id for _, recipe_id in by_recipe}
    assert len(recipe_ids) == len(KIDS)
    assert all(not np.allclose(by_recipe[(full.pk, r)], by_recipe[(fast.pk, r)], atol=1e-3) for r in recipe_ids)


def test_refitting_retires_only_the_states_it_replaces(fast_mode: Path, kids_labelled: Category) -> None:
    tagger_fit()
    first = set(TaggerState.objects.filter(active=True).values_list("id", flat=True))

    tagger_fit()

    assert TaggerState.objects.filter(active=True).count() == 2
    assert first.isdisjoint(TaggerState.objects.filter(active=True).values_list("id", flat=True))
    assert not TrainingExample.objects.filter(state_id__in=first).exists()


def test_fast_mode_tags_with_what_its_state_learned(fast_mode: Path, kids_labelled: Category) -> None:
    tagger_fit()

    assert _verdict(*NEW_KIDS, embedding="fast") == ["kids"]


def test_without_fast_mode_a_fit_keeps_one_state(no_fast_mode: Path, kids_labelled: Category) -> None:
    tagger_fit()

    assert list(TaggerState.objects.filter(active=True).values_list("embedding_model", flat=True)) == [
        settings.EMBEDDING_MODEL
    ]


def _evaluate(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("evaluate", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_compare_fast_prints_both_models_per_category_and_the_delta(fast_mode: Path, tmp_path: Path) -> None:
    dataset = _write(tmp_path / "tiny.jsonl", _recipes())

    out, _ = _evaluate(str(dataset), "--folds", "2", "--categories", "cuisine", "--compare-fast")

    full, fast = EvaluationRun.objects.order_by("id")
    assert "embedding" not in full.config
    assert fast.config["embedding"] == "fast"
    # Two cuisines this far apart stay easy for the static model too (even the tests' small-vocabulary one).
    assert fast.metrics["categories"]["cuisine"]["f1"] > 0.8
    assert "Fast mode (static model2vec model) against the full model:" in out
    assert re.search(r"^category\s+support\s+full P\s+full R\s+full F1\s+fast P\s+fast R\s+fast F1\s+ΔF1", out, re.M)
    a, b = full.metrics["categories"]["cuisine"], fast.metrics["categories"]["cuisine"]
    numbers = [f"{value:.3f}" for value in (a["precision"], a["recall"], a["f1"], b["precision"], b["recall"], b["f1"])]
    row = r"\s+".join(["cuisine", "40", *map(re.escape, numbers), re.escape(f"{b['f1'] - a['f1']:+.3f}")])
    assert re.search(rf"^{row}$", out, re.M), out
    overall = full.metrics["overall"]["f1"], fast.metrics["overall"]["f1"]
    assert re.search(rf"^overall \(micro\)\s+.*{re.escape(f'{overall[1] - overall[0]:+.3f}')}$", out, re.M)
    assert f"Stored the fast mode's evaluation run #{fast.pk}" in out


def test_compare_fast_without_a_distilled_model_is_a_command_error_before_any_evaluation(
    no_fast_mode: Path, tmp_path: Path
) -> None:
    dataset = _write(tmp_path / "tiny.jsonl", _recipes())

    with pytest.raises(CommandError, match=r"manage\.py embedding_distill"):
        _evaluate(str(dataset), "--folds", "2", "--compare-fast")
    assert not EvaluationRun.objects.exists()


def test_the_distil_command_keeps_a_model_that_is_there(fast_mode: Path) -> None:
    out = StringIO()

    call_command("embedding_distill", stdout=out)

    assert f"{FAST_MODEL} is already in {fast_mode} (--force distils it again)." in out.getvalue()


def test_a_refresh_after_distilling_forgets_old_fast_vectors_and_fits_the_fast_state(
    fast_mode: Path, kids_labelled: Category
) -> None:
    tagger_fit()
    old_state = TaggerState.objects.get(active=True, embedding_model=FAST_MODEL)
    TagEmbedding.objects.filter(model=FAST_MODEL).update(embedding=[0.5] * settings.EMBEDDING_DIMENSIONS)

    state = fast_mode_refresh()

    assert state is not None
    assert state.pk != old_state.pk
    assert state.embedding_model == FAST_MODEL
    vectors = np.stack(
        [np.asarray(v) for v in TagEmbedding.objects.filter(model=FAST_MODEL).values_list("embedding", flat=True)]
    )
    assert not np.allclose(vectors, 0.5)
