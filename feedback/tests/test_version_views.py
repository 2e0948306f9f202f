"""The prompt version pages: one version's numbers (/prompts/versions/<id>/) and every version of a prompt side by
side (/prompts/<id>/versions/), their charts over versions, empty states, who may see them, and the links to them."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.client import Client
from django.test.utils import CaptureQueriesContext

from feedback.services.reviews import TagDecision, recipe_review_submit
from feedback.tests.prompt_versions import evaluation, judged, llm_usage, tagging_run, versions_of
from prompts.models import PromptVersion
from taxonomy.models import Category, Tag

pytestmark = pytest.mark.django_db


def version_url(version: PromptVersion) -> str:
    return f"/prompts/versions/{version.pk}/"


def overview_url(version: PromptVersion) -> str:
    return f"/prompts/{version.prompt_id}/versions/"


def _text(response: Any) -> str:
    """The page's text with tags dropped and whitespace squeezed, to assert on what a reader sees."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def _points(html: str, series: str) -> list[tuple[str, str, str]]:
    """(cx, cy, value) of each point of the chart line `series`, left to right, in the page's first chart."""
    chart = html[html.index("<svg viewBox") : html.index("</svg>")]
    group = re.search(rf'<g data-series="{re.escape(series)}">(.*?)</g>', chart, re.S)
    assert group is not None, f"no series {series}"
    return re.findall(r'<circle cx="([\d.]+)" cy="([\d.]+)" r="\d" fill="[^"]+" data-value="([\d.]+)"', group[1])


def _user(django_user_model: Any, name: str, *, is_staff: bool, perms: tuple[str, ...]) -> Any:
    user = django_user_model.objects.create_user(username=name, password="password", is_staff=is_staff)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="prompts", codename__in=perms))
    return user


def test_the_version_page_shows_its_evaluations_usage_judged_precision_and_acceptance(
    staff_browser: Client, cuisine: Category, reviewer: Any
) -> None:
    italian, mexican = cuisine.tags.order_by("slug")
    v1, v2 = versions_of("trial", 2)
    run_of_v2 = evaluation(
        v2,
        f1=0.6512,
        categories={"cuisine": 0.7},
        llm=llm_usage(answered=10, prompt=12000, completion=450, cost=0.03),
        judged_precision=0.8,
    )
    tagging_run(v2, input_tokens=900, output_tokens=30, cost=0.0015)
    run = tagging_run(v2, tags=(italian, mexican), input_tokens=1100, output_tokens=50, cost=0.0025)
    tagging_run(v2, cache_hit=True)
    judged(run, {italian: "relevant", mexican: "partly"})
    decisions = [TagDecision(tag_id=italian.pk, decision="accept"), TagDecision(tag_id=mexican.pk, decision="reject")]
    recipe_review_submit(recipe=run.recipe, run=run, decisions=decisions, reviewer=reviewer)

    response = staff_browser.get(version_url(v2))

    assert response.status_code == 200
    text = _text(response)
    assert "trial v2 active" in text
    assert "1 run; latest micro-F1 0.651 on themealdb (llm)" in text
    assert "1000.0 prompt + 40.0 completion tokens, $0.002000 over 2 runs that asked the model" in text
    assert "(1 more answered from the cache)" in text
    assert "1200.0 prompt + 45.0 completion tokens, $0.003000 over 10 answered recipes" in text
    assert "Judged precision 0.750 over 2 judged tags (1 relevant, 1 partly, 0 not)" in text
    assert "Acceptance 0.500 of 2 reviewed tags accepted; 0 added by reviewers" in text
    assert f"#{run_of_v2.pk} themealdb llm 3 20 0.651 1200.0 + 45.0 $0.003000 0.800" in text
    assert "cuisine 2 1 1 0 0.750" in text  # judged per category
    assert "cuisine 1 1 0 0.500" in text  # acceptance per category
    assert "Versions: v1 · v2 (active)" in text
    assert f'href="{version_url(v1)}">v1</a>' in response.content.decode()


def test_the_chart_over_versions_has_a_point_per_version_at_its_f1_in_version_order(
    staff_browser: Client,
) -> None:
    v1, v2, v3 = versions_of("trial", 3)
    evaluation(v3, f1=0.75, categories={"cuisine": 0.8, "course": 0.6})
    evaluation(v1, f1=0.25, categories={"cuisine": 0.5})
    evaluation(v2, f1=0.5, categories={"cuisine": 0.6, "course": 0.4})

    html = staff_browser.get(version_url(v2)).content.decode()

    # The plot spans x 60..532 and y 16 (F1 1) to 208 (F1 0).
    assert _points(html, "micro-F1") == [
        ("60.0", "160.0", "0.250"),
        ("296.0", "112.0", "0.500"),
        ("532.0", "64.0", "0.750"),
    ]
    assert [value for _, _, value in _points(html, "cuisine")] == ["0.500", "0.600", "0.800"]
    # v1 scored no course: its line starts at v2.
    assert [(x, value) for x, _, value in _points(html, "course")] == [("296.0", "0.400"), ("532.0", "0.600")]
    assert re.search(r'font-weight="700">v2</text>', html)  # the page's version is marked on the axis
    assert ">prompt version</text>" in html
    assert ">F1</text>" in html
    assert "<title>micro-F1, v3: 0.750</title>" in html


def test_the_version_page_says_so_when_nothing_was_measured(staff_browser: Client) -> None:
    (version,) = versions_of("trial", 1)

    text = _text(staff_browser.get(version_url(version)))

    assert "Not evaluated yet." in text
    assert "No tagging run has used this version." in text
    assert "No tag of this version has been judged yet." in text
    assert "No reviews yet." in text
    assert "No reviews yet: acceptance shows once reviewers have answered tags" in text
    assert "No version of trial has been evaluated yet" in text
    assert "<svg viewBox" not in staff_browser.get(version_url(version)).content.decode()


def test_the_overview_says_so_when_no_version_was_measured(staff_browser: Client) -> None:
    (version,) = versions_of("trial", 1)

    response = staff_browser.get(overview_url(version))

    text = _text(response)
    assert "v1 active 0 — — — 0 — — — no reviews yet" in text
    assert "No version of trial has been evaluated yet." in text
    assert "<svg viewBox" not in response.content.decode()


def test_the_overview_shows_every_version_side_by_side_with_the_chart(staff_browser: Client) -> None:
    v1, v2 = versions_of("trial", 2)
    evaluation(
        v1, f1=0.4, categories={"cuisine": 0.45}, llm=llm_usage(answered=4, prompt=4000, completion=80, cost=0.004)
    )
    evaluation(v2, f1=0.55, categories={"cuisine": 0.6})
    tagging_run(v2, input_tokens=700, output_tokens=10, cost=0.001)

    response = staff_browser.get(overview_url(v1))

    assert response.status_code == 200
    text = _text(response)
    assert "v1 1 0.400 themealdb (llm) 1000.0 + 20.0 $0.001000 0 — — — no reviews yet" in text
    assert "v2 active 1 0.550 themealdb (llm) — — 1 700.0 + 10.0 $0.001000 — no reviews yet" in text
    html = response.content.decode()
    assert [value for _, _, value in _points(html, "micro-F1")] == ["0.400", "0.550"]
    assert f'href="{version_url(v2)}"' in html


def test_a_version_or_prompt_that_does_not_exist_is_not_found(staff_browser: Client) -> None:
    assert staff_browser.get("/prompts/versions/999999/").status_code == 404
    assert staff_browser.get("/prompts/999999/versions/").status_code == 404


def test_the_pages_do_not_shadow_the_playground(staff_browser: Client) -> None:
    assert staff_browser.get("/prompts/playground/").status_code == 200


@pytest.mark.parametrize("page", [version_url, overview_url])
def test_an_anonymous_visitor_is_sent_to_the_login_page(client: Client, page: Any) -> None:
    (version,) = versions_of("trial", 1)

    response = client.get(page(version))

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("page", [version_url, overview_url])
@pytest.mark.parametrize(
    ("is_staff", "perms", "status"),
    [
        (False, ("view_promptversion",), 403),
        (True, (), 403),
        (True, ("view_promptversion",), 200),
    ],
)
def test_only_staff_who_may_see_prompt_versions_open_them(
    client: Client, django_user_model: Any, page: Any, is_staff: bool, perms: tuple[str, ...], status: int
) -> None:
    (version,) = versions_of("trial", 1)
    client.force_login(_user(django_user_model, "someone", is_staff=is_staff, perms=perms))

    assert client.get(page(version)).status_code == status


def _busy(count: int, tag: Tag) -> list[PromptVersion]:
    versions = versions_of(f"busy-{count}", count)
    for version in versions:
        evaluation(
            version, f1=0.5, categories={"cuisine": 0.5}, llm=llm_usage(answered=2, prompt=10, completion=2, cost=0.1)
        )
        run = tagging_run(version, tags=(tag,), input_tokens=10, cost=0.1)
        judged(run, {tag: "relevant"})
    return versions


@pytest.mark.parametrize(("page", "queries"), [(version_url, 9), (overview_url, 8)])
def test_the_pages_read_as_many_queries_for_many_versions_as_for_few(
    staff_browser: Client, cuisine: Category, page: Any, queries: int
) -> None:
    tag = cuisine.tags.first()
    few, many = _busy(2, tag), _busy(6, tag)

    counted = []
    for versions in (few, many):
        with CaptureQueriesContext(connection) as captured:
            assert staff_browser.get(page(versions[-1])).status_code == 200
        counted.append(len(captured))

    # The session and user, the version or prompt, then the selector's fixed few.
    assert counted == [queries, queries]
