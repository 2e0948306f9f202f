"""The staff pages of evaluation runs (list, report, comparison), and the runs in admin."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test.client import Client
from django.urls import reverse

from feedback.models import EvaluationRun

pytestmark = pytest.mark.django_db

LIST_URL = "/evaluations/"
COMPARE_URL = "/evaluations/compare/"


def _category(precision: float, recall: float, f1: float, **extra: Any) -> dict[str, Any]:
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "macro_f1": 0.5,
        "coverage": 0.9,
        "support": 40,
        **extra,
    }


def _run(
    *, dataset: str = "themealdb", cuisine_f1: float = 0.8148, course_f1: float = 0.6, **fields: Any
) -> EvaluationRun:
    metrics = {
        "dataset": dataset,
        "strategy": "similarity",
        "k": 3,
        "recipes": 586,
        "overall": {"precision": 0.7431, "recall": 0.6652, "f1": 0.702},
        "categories": {
            "cuisine": _category(0.9167, 0.7333, cuisine_f1, macro_f1=0.4321, coverage=0.8765, support=412),
            "course": _category(0.55, 0.66, course_f1),
        },
        "baselines": {
            "majority": {
                "cuisine": {"precision": 0.2, "recall": 0.2, "f1": 0.1111},
                "course": {"precision": 0.5, "recall": 0.5, "f1": 0.5},
            },
            "zero_shot": {
                "cuisine": {"precision": 0.4, "recall": 0.4, "f1": 0.2222},
                "course": {"precision": 0.3, "recall": 0.3, "f1": 0.3},
            },
            "knn15": {
                "cuisine": {"precision": 0.7, "recall": 0.7, "f1": 0.3333},
                "course": {"precision": 0.7, "recall": 0.7, "f1": 0.7},
            },
            "tfidf_logreg": {
                "cuisine": {"precision": 0.6, "recall": 0.6, "f1": 0.4444},
                "course": {"precision": 0.4, "recall": 0.4, "f1": 0.4},
            },
        },
        "latency_ms": {"p50": 12.5, "p95": 48.25},
        "adherence": {"unknown_tags": 0, "over_k": 0},
    }
    values = {
        "dataset": dataset,
        "dataset_sha256": "ab" * 32,
        "strategy": "similarity",
        "config": {"k": 3, "folds": 5, "train": None, "categories": ["cuisine", "course"]},
        "code_version": "abc1234",
        "metrics": metrics,
        "recipes": 586,
        "overall_f1": 0.702,
        "duration_seconds": 12.0,
        **fields,
    }
    return EvaluationRun.objects.create(**values)


def _text(response: Any) -> str:
    """The page's text with tags dropped and whitespace squeezed, to assert on what a reader sees."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def test_the_list_shows_each_run_with_its_numbers(staff_browser: Client, django_assert_max_num_queries: Any) -> None:
    first = _run(dataset="themealdb", overall_f1=0.702)
    second = _run(dataset="basedcooking", overall_f1=0.6543, config={"k": 5, "folds": 2, "train": None})

    # Two more than the runs need: the evaluation jobs with their progress, and the model sources to offer.
    with django_assert_max_num_queries(10):
        response = staff_browser.get(LIST_URL)

    assert response.status_code == 200
    text = _text(response)
    assert f"#{second.pk} basedcooking Similarity (no LLM) 5 586 0.654" in text
    assert f"#{first.pk} themealdb Similarity (no LLM) 3 586 0.702" in text
    # Newest first.
    assert text.index(f"#{second.pk} basedcooking") < text.index(f"#{first.pk} themealdb")
    assert f'href="/evaluations/{first.pk}/"' in response.content.decode()


def test_the_list_offers_the_two_newest_runs_to_compare(staff_browser: Client) -> None:
    older, newer = _run(), _run()

    html = staff_browser.get(LIST_URL).content.decode()

    assert f'action="{COMPARE_URL}"' in html
    assert re.search(rf'<select name="a"[^>]*>.*<option value="{older.pk}" selected>', html, re.S)
    assert re.search(rf'<select name="b"[^>]*>.*<option value="{newer.pk}" selected>', html, re.S)


def test_the_list_says_so_when_there_are_no_runs(staff_browser: Client) -> None:
    response = staff_browser.get(LIST_URL)

    assert "No evaluations yet" in response.content.decode()
    assert 'name="a"' not in response.content.decode()


def test_a_run_page_shows_every_metric_with_the_baselines_beside(staff_browser: Client) -> None:
    run = _run()

    response = staff_browser.get(f"/evaluations/{run.pk}/")

    assert response.status_code == 200
    text = _text(response)
    # Category, support, precision, recall, F1, macro-F1, coverage, then the baselines' F1 and the marker.
    assert "cuisine 412 0.917 0.733 0.815 0.432 0.877 0.111 0.222 0.333 0.444 yes" in text
    # course: knn15's 0.700 beats the tagger's 0.600.
    assert "course 40 0.550 0.660 0.600 0.500 0.900 0.500 0.300 0.700 0.400 no" in text
    # In the order the run scored them (the stored JSON keeps no key order).
    assert text.index("cuisine 412") < text.index("course 40")
    assert "Majority Zero-shot k-NN (15) TF-IDF + LR" in text
    assert "Overall micro-F1 0.702 (precision 0.743, recall 0.665)" in text
    assert "p50 12.50 ms, p95 48.25 ms" in text
    assert "0 unknown tags, 0 over k" in text
    assert "5-fold cross-validation" in text
    assert "cuisine, course" in text
    assert "abc1234" in text


def test_a_run_page_draws_a_bar_for_precision_recall_and_f1_of_each_category(staff_browser: Client) -> None:
    run = _run()

    html = staff_browser.get(f"/evaluations/{run.pk}/").content.decode()

    bars = re.findall(r'class="score-bar" style="width: (\d+)%', html)
    # cuisine 0.9167, 0.7333, 0.8148; course 0.55, 0.66, 0.6.
    assert bars == ["92", "73", "81", "55", "66", "60"]
    assert "<script" not in html.replace('<script src="/static/autotagger/app.js" defer></script>', "")


def test_a_run_page_flags_answers_outside_the_rules(staff_browser: Client) -> None:
    run = _run()
    run.metrics["adherence"] = {"unknown_tags": 2, "over_k": 1}
    run.save()

    html = staff_browser.get(f"/evaluations/{run.pk}/").content.decode()

    assert '<span class="badge badge-failed">2 unknown tags, 1 over k</span>' in html


def test_a_missing_run_is_not_found(staff_browser: Client) -> None:
    assert staff_browser.get("/evaluations/999999/").status_code == 404


def test_the_compare_page_shows_both_f1_and_the_coloured_difference(staff_browser: Client) -> None:
    a = _run(cuisine_f1=0.7, course_f1=0.65)
    b = _run(cuisine_f1=0.8, course_f1=0.6)

    response = staff_browser.get(COMPARE_URL, {"a": a.pk, "b": b.pk})

    assert response.status_code == 200
    html = response.content.decode()
    assert re.search(r"cuisine</th>\s*<td class=\"num\">0.700</td>\s*<td class=\"num\">0.800</td>", html)
    assert '<span class="badge badge-succeeded">+0.100</span>' in html
    assert re.search(r"course</th>\s*<td class=\"num\">0.650</td>\s*<td class=\"num\">0.600</td>", html)
    assert '<span class="badge badge-failed">-0.050</span>' in html
    # Overall: both 0.702.
    assert re.search(r"F1</th>\s*<td class=\"num\">0.702</td>\s*<td class=\"num\">0.702</td>", html)
    assert '<span class="badge">0.000</span>' in html
    assert "not directly comparable" not in html


def test_the_compare_page_shows_a_category_only_one_run_scored(staff_browser: Client) -> None:
    a = _run()
    b = _run()
    b.metrics["categories"]["diet"] = _category(0.5, 0.5, 0.5)
    b.save()

    html = staff_browser.get(COMPARE_URL, {"a": a.pk, "b": b.pk}).content.decode()

    assert re.search(r"diet</th>\s*<td class=\"num\">—</td>\s*<td class=\"num\">0.500</td>", html)


def test_the_compare_page_warns_when_the_runs_scored_different_files(staff_browser: Client) -> None:
    a = _run(dataset="themealdb")
    b = _run(dataset="basedcooking", dataset_sha256="cd" * 32)

    html = staff_browser.get(COMPARE_URL, {"a": a.pk, "b": b.pk}).content.decode()

    assert "not directly comparable" in html


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({}, "Run A: This field is required."),
        ({"a": "1", "b": "999999"}, "Run B: Select a valid choice."),
        ({"a": "x", "b": "1"}, "Run A: Select a valid choice."),
        ({"a": "1", "b": "1"}, "Pick two different runs."),
    ],
)
def test_comparing_without_two_existing_runs_is_a_bad_request(
    staff_browser: Client, query: dict[str, str], message: str
) -> None:
    run = _run()
    query = {key: str(run.pk) if value == "1" else value for key, value in query.items()}

    response = staff_browser.get(COMPARE_URL, query)

    assert response.status_code == 400
    assert message in _text(response)


@pytest.mark.parametrize("path", [LIST_URL, "/evaluations/{pk}/", COMPARE_URL + "?a={pk}&b={pk}"])
def test_anonymous_visitors_are_sent_to_log_in(client: Client, path: str) -> None:
    url = path.format(pk=_run().pk)

    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.parametrize("path", [LIST_URL, "/evaluations/{pk}/", COMPARE_URL + "?a={pk}&b={pk}"])
def test_signed_in_users_who_are_not_staff_are_forbidden(client: Client, api_client_user: Any, path: str) -> None:
    url = path.format(pk=_run().pk)
    client.force_login(api_client_user)

    assert client.get(url).status_code == 403


def test_the_nav_links_to_evaluations_for_staff_only(client: Client, staff: Any, api_client_user: Any) -> None:
    link = f'<a href="{LIST_URL}"'
    client.force_login(api_client_user)
    assert link not in client.get("/").content.decode()

    client.force_login(staff)

    assert link in client.get("/").content.decode()


def test_the_admin_lists_runs_read_only_and_links_to_their_report(staff_browser: Client) -> None:
    run = _run()

    changelist = staff_browser.get(reverse("admin:feedback_evaluationrun_changelist"))
    change = staff_browser.get(reverse("admin:feedback_evaluationrun_change", args=[run.pk]))
    add = staff_browser.get(reverse("admin:feedback_evaluationrun_add"))

    assert changelist.status_code == 200
    text = _text(changelist)
    assert f"{run.pk} themealdb Similarity (no LLM) 3 586 0.702 abc1234" in text
    assert f'<a href="/evaluations/{run.pk}/">View report</a>' in changelist.content.decode()
    assert change.status_code == 200
    assert f'<a href="/evaluations/{run.pk}/">View report</a>' in change.content.decode()
    assert 'name="_save"' not in change.content.decode()
    assert add.status_code == 403


def _bins(counts: list[int], accuracy: list[float]) -> list[dict[str, Any]]:
    return [
        {
            "lower": b / 10,
            "upper": (b + 1) / 10,
            "count": counts[b],
            "mean_score": b / 10 + 0.05 if counts[b] else 0.0,
            "accuracy": accuracy[b],
        }
        for b in range(10)
    ]


def test_a_run_page_shows_the_margin_over_the_best_baseline_and_a_reliability_diagram(staff_browser: Client) -> None:
    run = _run()
    run.metrics["calibration"] = {
        "cuisine": {
            "ece": 0.0312,
            "pairs": 1236,
            "population": "top_k",
            "bins": _bins([600, 0, 0, 0, 0, 0, 0, 0, 236, 400], [0.04, 0, 0, 0, 0, 0, 0, 0, 0.86, 0.95]),
        },
        "course": {"ece": 0.08, "pairs": 120, "population": "top_k", "bins": _bins([120] + [0] * 9, [0.1] + [0] * 9)},
    }
    run.metrics["comparison"] = {
        "cuisine": {
            "best_baseline": "tfidf_logreg",
            "tagger_f1": 0.8148,
            "baseline_f1": 0.4444,
            "margin": 0.3704,
            "margin_sd": 0.02,
            "interval_95": [0.33, 0.41],
        },
        "course": {
            "best_baseline": "knn15",
            "tagger_f1": 0.6,
            "baseline_f1": 0.7,
            "margin": -0.1,
            "margin_sd": 0.05,
            "interval_95": [-0.2, 0.01],
        },
    }
    run.metrics["precision_floors"] = {"cuisine": 0.5, "course": None}
    run.save()

    response = staff_browser.get(f"/evaluations/{run.pk}/")

    text = _text(response)
    assert "cuisine 412 TF-IDF + LR 0.444 +0.370 0.330 to 0.410 0.031 0.50" in text
    assert "course 40 k-NN (15) 0.700 -0.100 -0.200 to 0.010 0.080 none" in text
    html = response.content.decode()
    # Three non-empty bins for cuisine, one for course; a bar's height is its accuracy of the 160-unit plot.
    heights = re.findall(r'class="reliability-bar" x="[\d.]+" y="[\d.]+" width="[\d.]+" height="([\d.]+)"', html)
    assert heights == ["6.4", "137.6", "152.0", "16.0"]
    assert "Scores 0.9–1.0: 400 tags, mean score 0.95, 95% right" in html


def test_a_run_stored_before_calibration_was_measured_says_so(staff_browser: Client) -> None:
    run = _run()

    text = _text(staff_browser.get(f"/evaluations/{run.pk}/"))

    assert "This run was stored before margins and calibration were measured." in text
