"""Evaluating the strategies that ask a model: an evaluation job against a scripted OpenAI-compatible server
that answers like an oracle (each recipe's gold tags) or carelessly (the first allowed tag)."""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

from conftest import wait_for
from feedback.dispatch import evaluation_job_enqueue, evaluation_job_enqueue_now
from feedback.evaluation.confidence import confidence_calibration_fit, source_calibration_apply
from feedback.evaluation.errors import EvaluationError
from feedback.evaluation.jobs import evaluation_job_run_here, evaluation_job_start, evaluation_job_step
from feedback.models import EvaluationItem, EvaluationJob, EvaluationJobStatus, EvaluationRun
from prompts.gateway import LLMRejected
from prompts.models import LLMCall, LLMSource
from prompts.rendering import RECIPE_CLOSE, RECIPE_OPEN, confidence_calibrated
from prompts.tests.openai_server import OpenAIServer

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("taxonomy")]

# Written for these tests: (title, ingredients, instructions, cuisine names as a dataset would give them).
RECIPES = [
    ("Spaghetti al Pomodoro", ["spaghetti", "tomatoes", "basil"], "Boil pasta, toss with sauce.", ["Italian"]),
    ("Chicken Tikka", ["chicken", "yoghurt", "garam masala"], "Marinate and grill.", ["Indian"]),
    ("Beef Tacos", ["tortillas", "beef", "salsa"], "Fry beef, fill tortillas.", ["Mexican"]),
    ("Miso Soup", ["miso", "tofu", "wakame", "dashi"], "Warm dashi, stir in miso.", ["Japanese"]),
    ("Pad Thai", ["rice noodles", "tamarind", "peanuts", "egg"], "Stir-fry noodles with sauce.", ["Thai"]),
    ("Greek Salad", ["feta", "tomato", "cucumber", "olives"], "Chop and dress with olive oil.", ["Greek"]),
]
TITLE = re.compile(r"Title: (.+)")


def _dataset(tmp_path: Path, recipes: list[tuple[str, list[str], str, list[str]]] = RECIPES) -> Path:
    path = tmp_path / "cuisines.jsonl"
    lines = [
        json.dumps({"id": f"r{i}", "title": t, "ingredients": ing, "instructions": ins, "tags": {"cuisine": cuisines}})
        for i, (t, ing, ins, cuisines) in enumerate(recipes)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _llm_job(tmp_path: Path) -> EvaluationJob:
    """An llm evaluation job over the cuisines dataset with the scripted source, k=1, not started."""
    return evaluation_job_start(
        content=_dataset(tmp_path).read_bytes(),
        name="cuisines",
        strategy="llm",
        source="scripted",
        k=1,
        categories=None,
    )


def _recipe_title(request: dict[str, Any]) -> str:
    """The title of the recipe being tagged: the last fenced recipe (few-shot examples come before it)."""
    user = next(m["content"] for m in request["messages"] if m["role"] == "user")
    block = user[user.rindex(RECIPE_OPEN) : user.rindex(RECIPE_CLOSE)]
    found = TITLE.search(block)
    assert found, block
    return found.group(1).strip()


def _offered(request: dict[str, Any]) -> dict[str, list[str]]:
    schema = request["response_format"].get("json_schema", {}).get("schema") or request["response_format"]["schema"]
    return {slug: spec["items"]["properties"]["tag"]["enum"] for slug, spec in schema["properties"].items()}


def oracle(request: dict[str, Any]) -> dict[str, Any]:
    gold = {t: [c.lower() for c in cuisines] for t, _, _, cuisines in RECIPES}[_recipe_title(request)]
    return {
        slug: [{"tag": tag, "reason": "gold", "confidence": 0.9} for tag in gold if tag in allowed]
        for slug, allowed in _offered(request).items()
    }


def careless(request: dict[str, Any]) -> dict[str, Any]:
    return {
        slug: [{"tag": allowed[0], "reason": "first", "confidence": 0.9}] for slug, allowed in _offered(request).items()
    }


@pytest.fixture
def one_at_a_time(settings: Any) -> Any:
    # The test's transaction is invisible to other connections: answers are asked from this thread.
    settings.EVALUATION_LLM_CONCURRENCY = 1
    return settings


def _run(tmp_path: Path, strategy: str = "llm", **kwargs: Any) -> EvaluationJob:
    job = evaluation_job_start(
        content=_dataset(tmp_path).read_bytes(),
        name="cuisines",
        strategy=strategy,
        source=None,
        k=kwargs.pop("k", 1),
        categories=["cuisine"],
    )
    return evaluation_job_run_here(job_id=job.pk, **kwargs)


def test_an_oracle_model_scores_perfectly_and_the_report_counts_its_tokens_and_cost(
    llm_settings: Any, openai_server: OpenAIServer, one_at_a_time: Any, tmp_path: Path
) -> None:
    openai_server.reply_computed(oracle, times=len(RECIPES))

    job = _run(tmp_path)

    assert job.status == EvaluationJobStatus.SUCCEEDED, job.error
    run = job.run
    assert run is not None
    assert run.strategy == "llm"
    assert run.recipes == len(RECIPES)
    assert run.metrics["overall"]["f1"] == 1.0
    llm = run.metrics["llm"]
    assert llm["answered"] == len(RECIPES)
    assert llm["failures"] == 0
    assert llm["cache_hits"] == 0
    # The scripted server reports 100 prompt and 20 completion tokens per call, priced 0.5 and 1.5 per 1k.
    assert llm["tokens_per_recipe"] == {"prompt": 100.0, "completion": 20.0, "cached": 0.0}
    assert llm["cost_per_recipe"] == pytest.approx((100 * 0.5 + 20 * 1.5) / 1000)
    assert llm["latency_ms"]["p50"] > 0


def test_a_careless_model_scores_what_it_deserves(
    llm_settings: Any, openai_server: OpenAIServer, one_at_a_time: Any, tmp_path: Path
) -> None:
    openai_server.reply_computed(careless, times=len(RECIPES))

    job = _run(tmp_path)

    assert job.run is not None
    # The first allowed cuisine (alphabetical by name) is none of these recipes' cuisines.
    assert job.run.metrics["overall"]["f1"] < 0.2
    # One tag returned and one gold tag per recipe: every miss costs precision and recall alike.
    assert job.run.metrics["overall"]["precision"] == job.run.metrics["overall"]["recall"]


def test_it_resumes_where_it_stopped_and_asks_nothing_twice(
    llm_settings: Any, openai_server: OpenAIServer, one_at_a_time: Any, tmp_path: Path, settings: Any
) -> None:
    settings.EVALUATION_CHUNK_SIZE = 2
    openai_server.reply_computed(oracle, times=len(RECIPES))
    job = evaluation_job_start(
        content=_dataset(tmp_path).read_bytes(), name="cuisines", strategy="llm", source=None, k=1, categories=None
    )

    assert evaluation_job_step(job_id=job.pk) is True
    assert EvaluationItem.objects.filter(job=job).count() == 2
    assert len(openai_server.requests) == 2

    finished = evaluation_job_run_here(job_id=job.pk)
    assert finished.status == EvaluationJobStatus.SUCCEEDED
    assert len(openai_server.requests) == len(RECIPES), "each recipe was asked once"
    assert sorted(EvaluationItem.objects.filter(job=job).values_list("position", flat=True)) == list(
        range(len(RECIPES))
    )

    again = _run(tmp_path)

    assert len(openai_server.requests) == len(RECIPES), "the same question was answered from the earlier job"
    assert again.run is not None
    assert again.run.metrics["llm"]["cache_hits"] == len(RECIPES)
    assert again.run.metrics["overall"]["f1"] == 1.0


def test_a_recipe_the_model_fails_on_is_counted_and_reported_not_fatal(
    llm_settings: Any, openai_server: OpenAIServer, one_at_a_time: Any, tmp_path: Path
) -> None:
    openai_server.reply_computed(oracle, times=1)
    openai_server.reply_status(400, "This model does not exist")  # a client error: not retried
    openai_server.reply_computed(oracle, times=len(RECIPES) - 2)

    job = _run(tmp_path)

    assert job.run is not None
    llm = job.run.metrics["llm"]
    assert llm["failures"] == 1
    assert llm["answered"] == len(RECIPES) - 1
    assert llm["failure_examples"][0].endswith(LLMRejected.default_message)  # the provider's words: the ledger
    assert LLMCall.objects.filter(error__contains="This model does not exist").exists()
    assert job.run.metrics["overall"]["recall"] == pytest.approx((len(RECIPES) - 1) / len(RECIPES), abs=1e-3)


def test_it_refuses_what_it_cannot_evaluate_and_stores_nothing(
    llm_settings: Any, tmp_path: Path, settings: Any
) -> None:
    content = _dataset(tmp_path).read_bytes()
    with pytest.raises(EvaluationError, match="not 'similarity'"):
        evaluation_job_start(content=content, name="x", strategy="similarity", source=None, k=1, categories=None)
    with pytest.raises(EvaluationError, match="no tags in course"):
        evaluation_job_start(content=content, name="x", strategy="llm", source=None, k=1, categories=["course"])
    with pytest.raises(EvaluationError, match="no LLM source named 'nope'"):
        evaluation_job_start(content=content, name="x", strategy="llm", source="nope", k=1, categories=None)
    settings.LLM_BASE_URL = ""
    with pytest.raises(EvaluationError, match="LLM_BASE_URL"):
        evaluation_job_start(content=content, name="x", strategy="hybrid", source=None, k=1, categories=None)
    assert not EvaluationJob.objects.exists()
    assert not EvaluationRun.objects.exists()


def test_the_command_evaluates_the_llm_strategy_and_prints_what_it_cost(
    llm_settings: Any, openai_server: OpenAIServer, one_at_a_time: Any, tmp_path: Path
) -> None:
    openai_server.reply_computed(oracle, times=len(RECIPES))
    out = StringIO()

    call_command("evaluate", str(_dataset(tmp_path)), strategy="llm", k=1, here=True, stdout=out, stderr=StringIO())

    text = out.getvalue()
    assert "strategy llm" in text
    assert "Tokens per recipe: prompt 100.0, completion 20.0" in text
    assert "Overall micro-F1 1.000" in text
    assert EvaluationRun.objects.get().config["source"] == "default"


def test_the_command_refuses_folds_for_the_llm_strategy(llm_settings: Any, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="--folds and --train apply to the similarity strategy"):
        call_command("evaluate", str(_dataset(tmp_path)), strategy="llm", folds=3, stdout=StringIO())


def test_staff_start_an_evaluation_on_the_page_and_follow_its_progress(
    llm_settings: Any,
    openai_server: OpenAIServer,
    one_at_a_time: Any,
    tmp_path: Path,
    staff_browser: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with _dataset(tmp_path).open("rb") as upload, django_capture_on_commit_callbacks() as queued:
        response = staff_browser.post(
            "/evaluations/",
            {"dataset": upload, "strategy": "llm", "source": "default", "k": 1, "categories": "cuisine"},
        )

    job = EvaluationJob.objects.get()
    assert response.status_code == 302
    assert response.url == f"/evaluations/jobs/{job.pk}/"
    assert len(queued) == 1, "the job's first chunk is queued once the job is committed"
    page = staff_browser.get(response.url)
    assert page.status_code == 200
    assert b"0 done \xc2\xb7 0 failed \xc2\xb7 6 total" in page.content
    assert staff_browser.get(f"/evaluations/jobs/{job.pk}/status").json()["status"] == "queued"

    openai_server.reply_computed(oracle, times=len(RECIPES))
    evaluation_job_run_here(job_id=job.pk)

    status = staff_browser.get(f"/evaluations/jobs/{job.pk}/status").json()
    assert status["status"] == "succeeded"
    assert status["done"] == 6
    assert status["percent"] == 100
    report = staff_browser.get(status["run_url"])
    assert b"Tokens per recipe" in report.content
    assert b"source default" in report.content


def test_a_bad_dataset_on_the_page_is_refused_with_the_line_and_nothing_starts(
    llm_settings: Any, staff_browser: Any, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "title": "x"}\nnot json\n')
    with bad.open("rb") as upload:
        response = staff_browser.post(
            "/evaluations/", {"dataset": upload, "strategy": "llm", "source": "default", "k": 1}
        )

    assert response.status_code == 400
    assert b"line 1" in response.content or b"line 2" in response.content
    assert not EvaluationJob.objects.exists()


def test_who_may_not_start_evaluations_sees_no_form_and_is_refused(
    llm_settings: Any, client: Any, reviewer: Any, tmp_path: Path
) -> None:
    reviewer.is_staff = True
    reviewer.save()
    client.force_login(reviewer)

    assert b"Evaluate llm or hybrid" not in client.get("/evaluations/").content
    with _dataset(tmp_path).open("rb") as upload:
        response = client.post("/evaluations/", {"dataset": upload, "strategy": "llm", "source": "default", "k": 1})
    assert response.status_code == 403
    assert not EvaluationJob.objects.exists()


def test_the_confidence_a_model_states_is_calibrated_on_the_gold_labels_and_given_to_its_source(
    llm_settings: Any, openai_server: OpenAIServer, one_at_a_time: Any, tmp_path: Path
) -> None:
    source = LLMSource.objects.create(
        name="overconfident", base_url=openai_server.url, model="test-model", probed_at=timezone.now()
    )
    dishes = [(f"Dish number {i}", ["pasta", "tomato"], "Cook.", ["Italian"]) for i in range(40)]
    path = _dataset(tmp_path, dishes)

    def overconfident(request: dict[str, Any]) -> dict[str, Any]:
        # Says 0.9 every time and is right half the time.
        number = int(_recipe_title(request).rsplit(" ", 1)[1])
        return {"cuisine": [{"tag": "italian" if number % 2 else "greek", "reason": "?", "confidence": 0.9}]}

    openai_server.reply_computed(overconfident, times=len(dishes))
    out = StringIO()

    call_command(
        "evaluate",
        str(path),
        strategy="llm",
        source="overconfident",
        k=1,
        here=True,
        calibrate=True,
        stdout=out,
        stderr=StringIO(),
    )

    confidence = EvaluationRun.objects.get().metrics["llm"]["confidence"]
    assert confidence["pairs"] == 40
    assert confidence["ece_stated"] == pytest.approx(0.4, abs=0.01)
    assert confidence["ece_calibrated"] < 0.05
    source.refresh_from_db()
    assert source.confidence_calibration == confidence["table"]
    assert confidence_calibrated(value=0.9, table=[tuple(p) for p in source.confidence_calibration]) == pytest.approx(
        0.5, abs=0.01
    )
    assert "ECE 0.400 as stated" in out.getvalue()


def test_a_calibration_needs_enough_tags_and_a_source_row_to_keep_it(tmp_path: Path) -> None:
    few = confidence_calibration_fit(scores=np.full(10, 0.9), truth=np.ones(10))
    assert few["pairs"] == 10
    assert few["table"] is None

    scores = np.linspace(0.05, 0.95, 200)
    truth = (np.random.default_rng(7).random(200) < scores * 0.5).astype(float)
    fitted = confidence_calibration_fit(scores=scores, truth=truth)
    table = fitted["table"]
    assert [x for x, _ in table] == sorted(x for x, _ in table)
    assert [y for _, y in table] == sorted(y for _, y in table), "never less sure for a higher stated confidence"
    assert fitted["ece_calibrated"] < fitted["ece_stated"]

    run = EvaluationRun.objects.create(
        dataset="d",
        dataset_sha256="0" * 64,
        strategy="llm",
        config={"source": "default"},
        metrics={"llm": {"confidence": fitted}},
        recipes=200,
        overall_f1=0.5,
        code_version="x",
        duration_seconds=1,
    )
    with pytest.raises(EvaluationError, match="comes from settings and has no row"):
        source_calibration_apply(source="default", run=run)
    with pytest.raises(EvaluationError, match="measured the source 'default', not 'other'"):
        source_calibration_apply(source="other", run=run)


@pytest.fixture
def scripted_source(openai_server: OpenAIServer) -> LLMSource:
    """A source row the worker process reads too (settings changed in a test stay in the test's process)."""
    return LLMSource.objects.create(
        name="scripted", base_url=openai_server.url, model="test-model", probed_at=timezone.now()
    )


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_the_worker_does_the_job_a_chunk_at_a_time_with_answers_asked_in_parallel(
    celery_worker_process: Any, scripted_source: LLMSource, openai_server: OpenAIServer, tmp_path: Path, settings: Any
) -> None:
    openai_server.reply_computed(oracle, times=len(RECIPES))
    job = _llm_job(tmp_path)

    evaluation_job_enqueue(job=job)

    finished = wait_for(
        lambda: (
            EvaluationJob.objects.get(pk=job.pk).status in (EvaluationJobStatus.SUCCEEDED, EvaluationJobStatus.FAILED)
        ),
        timeout=120,
    )
    assert finished, "the worker did not finish the job within 120 s; see the test-worker log in .data/"
    job.refresh_from_db()
    assert job.status == EvaluationJobStatus.SUCCEEDED, job.error
    assert job.run is not None
    assert job.run.metrics["overall"]["f1"] == 1.0
    assert len(openai_server.requests) == len(RECIPES)


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_job_whose_worker_died_is_taken_over_and_finished_without_asking_twice(
    celery_worker_process: Any, scripted_source: LLMSource, openai_server: OpenAIServer, tmp_path: Path
) -> None:
    job = _llm_job(tmp_path)
    # What a worker killed mid-chunk leaves: two answers stored, the job running, its lease run out.
    openai_server.reply_computed(oracle, times=2)
    with override_settings(EVALUATION_CHUNK_SIZE=2, EVALUATION_LLM_CONCURRENCY=1):
        assert evaluation_job_step(job_id=job.pk) is True
    EvaluationJob.objects.filter(pk=job.pk).update(
        status=EvaluationJobStatus.RUNNING, lease_until=timezone.now() - timedelta(seconds=1)
    )
    openai_server.reply_computed(oracle, times=len(RECIPES) - 2)

    evaluation_job_enqueue(job=job)  # the broker's re-delivery of the dead worker's message

    assert wait_for(lambda: EvaluationJob.objects.get(pk=job.pk).status == EvaluationJobStatus.SUCCEEDED, timeout=120)
    assert len(openai_server.requests) == len(RECIPES), "every recipe was asked once"
    assert EvaluationItem.objects.filter(job=job).count() == len(RECIPES)


def test_a_job_that_cannot_be_queued_is_failed_within_seconds_saying_so(
    scripted_source: LLMSource, tmp_path: Path, settings: Any
) -> None:
    job = _llm_job(tmp_path)
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    started = time.monotonic()

    evaluation_job_enqueue_now(job=job)

    assert time.monotonic() - started < 3
    job.refresh_from_db()
    assert job.status == EvaluationJobStatus.FAILED
    assert job.error == "The task queue is unavailable; try again shortly."
    assert job.finished_at is not None


def test_hybrid_is_measured_against_an_oracle_and_a_careless_model_with_its_shortlist_recall(
    llm_settings: Any, openai_server: OpenAIServer, one_at_a_time: Any, tmp_path: Path
) -> None:
    # Zero-shot, with nothing learned: hybrid offers each category's best few tags and accepts none.
    openai_server.reply_computed(oracle, times=len(RECIPES))
    with_oracle = _run(tmp_path, strategy="hybrid").run
    openai_server.reply_computed(careless, times=len(RECIPES))
    with_careless = _run(tmp_path, strategy="hybrid").run

    assert with_oracle is not None
    assert with_careless is not None
    hybrid = with_oracle.metrics["hybrid"]
    recall = hybrid["shortlist_recall"]
    assert hybrid["gold_tags_in_taxonomy"] == len(RECIPES)
    assert 0 < recall <= 1
    # A perfect model finds every gold tag the shortlist let through, and adds nothing else.
    assert with_oracle.metrics["overall"]["recall"] == pytest.approx(recall, abs=1e-3)
    assert with_oracle.metrics["overall"]["precision"] == 1.0
    # The careless model takes the shortlist's first tag, similarity's best: never better than the oracle.
    assert with_careless.metrics["overall"]["f1"] <= with_oracle.metrics["overall"]["f1"]
    assert with_careless.metrics["hybrid"]["shortlist_recall"] == recall
    assert with_oracle.prompt_version == "tagging-hybrid v1"
    assert hybrid["shortlisted_per_recipe"] > 1
    assert hybrid["decided_by_llm"] == round(recall * len(RECIPES))
    assert set(hybrid["similarity_alone"]["overall"]) == {"precision", "recall", "f1"}
    # Fewer tags offered than the llm strategy's whole category: fewer prompt tokens measured by the server.
    assert with_oracle.metrics["llm"]["tokens_per_recipe"]["prompt"] == 100.0


def _careless_then_judged_by_gold(request: dict[str, Any]) -> dict[str, Any]:
    """When asked to tag, the oracle on the first three recipes and the careless model on the others; when asked
    to judge, a judge that knows the gold cuisines."""
    if request["response_format"]["json_schema"]["name"] != "tag_judgements":
        first_three = {title for title, _, _, _ in RECIPES[:3]}
        return oracle(request) if _recipe_title(request) in first_three else careless(request)
    gold = {t: {f"cuisine/{c.lower()}" for c in cuisines} for t, _, _, cuisines in RECIPES}[_recipe_title(request)]
    keys = request["response_format"]["json_schema"]["schema"]["required"]
    return {key: {"verdict": "relevant" if key in gold else "not_relevant", "reason": "gold"} for key in keys}


def test_the_command_judges_an_llm_evaluations_predictions_and_stores_the_report(
    llm_settings: Any, openai_server: OpenAIServer, one_at_a_time: Any, tmp_path: Path
) -> None:
    openai_server.reply_computed(_careless_then_judged_by_gold, times=2 * len(RECIPES))
    out = StringIO()

    call_command(
        "evaluate",
        str(_dataset(tmp_path)),
        strategy="llm",
        k=1,
        here=True,
        judge="default",
        stdout=out,
        stderr=StringIO(),
    )

    run = EvaluationRun.objects.get()
    judge = run.metrics["judge"]
    assert judge["recipes_judged"] == len(RECIPES)
    assert judge["judged_precision"] == pytest.approx(run.metrics["overall"]["precision"], abs=1e-4)
    assert judge["kappa"] == 1.0
    assert "Agreement with gold on 6 tags: Cohen's kappa 1.000" in out.getvalue()


def test_an_unknown_judge_is_refused_before_the_llm_evaluation_starts(llm_settings: Any, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="The judge cannot be asked"):
        call_command("evaluate", str(_dataset(tmp_path)), strategy="llm", here=True, judge="nowhere", stdout=StringIO())

    assert not EvaluationJob.objects.exists()
