"""runner.learned_report: the learned tagger alone, cross-validated exactly as `evaluate` scores it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from feedback.evaluation import runner
from feedback.evaluation.datasets import dataset_read
from feedback.tests.test_evaluation import _recipes, _write
from tagging.services.recipes import embeddings_cached

pytestmark = pytest.mark.django_db


def _embed(texts: Sequence[str]) -> np.ndarray:
    return embeddings_cached(texts=list(texts))


def test_it_scores_the_tagger_as_the_full_evaluation_does(tmp_path: Path) -> None:
    dataset = dataset_read(_write(tmp_path / "tiny.jsonl", _recipes()))

    report = runner.learned_report(test=dataset, folds=2, k=3, embed=_embed)

    full = runner.evaluate(test=dataset, train=None, folds=2, k=3, categories=None, embed=_embed)
    assert report.overall_f1 == pytest.approx(full.report.overall_f1, abs=1e-9)
    assert {slug: c.f1 for slug, c in report.categories.items()} == pytest.approx(
        {slug: c.f1 for slug, c in full.report.categories.items()}, abs=1e-9
    )
