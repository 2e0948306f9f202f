"""`manage.py evaluate PATH` (the tagger as deployed) reads the file a batch of recipes at a time and reports
what scoring the whole file in memory reports."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from feedback.evaluation import runner
from feedback.evaluation.datasets import dataset_read
from feedback.models import EvaluationRun
from feedback.services.evaluation import evaluation_run
from feedback.tests.test_evaluation import _recipes, _write
from feedback.training import labelled_data
from tagging.services.recipes import embeddings_cached
from tagging.services.runs import recipes_predict

pytestmark = pytest.mark.django_db


def _without_latency(metrics: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in metrics.items() if key != "latency_ms"}


@pytest.fixture
def labelled(tmp_path: Path, taxonomy: dict[str, Any]) -> Path:
    """Gold labels in the database (half the recipes, imported), so the baselines learn and are compared."""
    rows = _recipes()
    call_command("import_recipes", str(_write(tmp_path / "known.jsonl", rows[::2])), "--labeled", stdout=StringIO())
    return _write(tmp_path / "tiny.jsonl", rows)


def test_the_file_scored_in_batches_reports_what_it_reports_scored_in_memory(labelled: Path, settings: Any) -> None:
    settings.EVALUATION_STREAM_BATCH = 7  # 40 recipes: five full batches and one of five

    streamed = evaluation_run(path=labelled, k=2, strategy="similarity", categories=None, folds=None, train_path=None)
    in_memory = runner.evaluate_with_database(
        test=dataset_read(labelled),
        k=2,
        categories=None,
        embed=lambda texts: embeddings_cached(texts=list(texts)),
        predict=recipes_predict,
        labelled=labelled_data(),
    )

    assert _without_latency(streamed.metrics) == _without_latency(in_memory.as_json())
    assert streamed.recipes == 40
    assert set(streamed.metrics["baselines"]) == {"majority", "zero_shot", "knn15", "tfidf_logreg"}
    assert set(streamed.metrics["comparison"]) == {"cuisine", "course"}
    assert streamed.metrics["latency_ms"]["p50"] > 0


def test_the_command_prints_the_same_report_in_batches(labelled: Path, settings: Any) -> None:
    settings.EVALUATION_STREAM_BATCH = 1000
    whole, _ = StringIO(), None
    call_command("evaluate", str(labelled), "--k", "2", stdout=whole, stderr=StringIO())
    settings.EVALUATION_STREAM_BATCH = 3
    batched, err = StringIO(), StringIO()

    call_command("evaluate", str(labelled), "--k", "2", stdout=batched, stderr=err)

    def report(text: str) -> list[str]:
        # The stored run's line names its number and duration; the latency line its timings.
        return [line for line in text.splitlines() if not line.startswith("Stored") and "latency" not in line.lower()]

    assert report(batched.getvalue()) == report(whole.getvalue())
    assert "Tagged and scored 39 of 40 recipes" in err.getvalue()
    assert EvaluationRun.objects.count() == 2
