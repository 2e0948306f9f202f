"""Who may do what: every role against every endpoint and method of /api/v1/ and the pages that show runs.

Client A owns a recipe (with a run, its tags and a job) and a gold-labelled recipe. Every cell says what each
role gets: the status, whether a list shows A's objects, and for a refusal that is not the plain one, its
error code. API callers use a token (api_client_for); page visitors a session.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from rest_framework.test import APIClient

from feedback.models import GoldLabel, GoldLabelSource
from retagging.models import RetagJob
from tagging.models import Recipe, RunStatus, Strategy, TagAssignment, TaggingJob, TaggingRun
from tagging.services.recipes import recipe_create
from taxonomy.tests.conftest import TagFactory

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "client_a", "client_b", "reviewer", "staff_without_permissions", "staff", "superuser")
STAFF_PERMISSIONS = (
    "tagging.view_recipe",
    "tagging.add_recipe",
    "tagging.change_recipe",
    "tagging.delete_recipe",
    "tagging.view_taggingrun",
    "tagging.view_taggingjob",
    "feedback.add_goldlabel",
    "feedback.delete_goldlabel",
    "feedback.view_feedback",
    "retagging.view_retagjob",
)
A_TITLE = "Smoked paprika stew of client A"
# The matrix's placeholders as the OpenAPI document names them.
SCHEMA_NAMES = {
    "{recipe}": "{recipe_id}",
    "{gold}": "{recipe_id}",
    "{job}": "{job_id}",
    "{retag_job}": "{job_id}",
    "{run}": "{run_id}",
    "{category}": "{slug}",
}


@dataclass(frozen=True)
class Cell:
    status: int
    # For a list or a page of recent runs: whether client A's objects are on it.
    shows_a: bool | None = None
    # For an API error other than the usual one of its status.
    code: str | None = None


SHOWN, NOT_SHOWN = Cell(200, shows_a=True), Cell(200, shows_a=False)
GOLD = Cell(403, code="recipe_gold_labelled")
KEPT = Cell(409, code="recipe_has_gold_labels")
NOT_YOURS = Cell(400, code="invalid_job")
RETAG_STATE = Cell(409, code="retag_job_state")


def _row(*cells: int | Cell) -> dict[str, Cell]:
    assert len(cells) == len(ROLES)
    return {role: cell if isinstance(cell, Cell) else Cell(cell) for role, cell in zip(ROLES, cells, strict=True)}


# (method, path, body, whether the request needs the embedded taxonomy) -> what each role gets, in ROLES order:
#             anonymous  client A  client B  reviewer  staff w/o perms  staff  superuser
MATRIX: list[tuple[str, str, Any, bool, dict[str, Cell]]] = [
    ("GET", "/api/v1/recipes", None, False, _row(401, SHOWN, NOT_SHOWN, SHOWN, NOT_SHOWN, SHOWN, SHOWN)),
    ("GET", "/api/v1/recipes?tag={tag}", None, False, _row(401, SHOWN, NOT_SHOWN, SHOWN, NOT_SHOWN, SHOWN, SHOWN)),
    ("GET", "/api/v1/recipes?stale=true", None, False, _row(401, SHOWN, NOT_SHOWN, SHOWN, NOT_SHOWN, SHOWN, SHOWN)),
    ("GET", "/api/v1/recipes?stale_cause=never_tagged", None, False, _row(401, *[NOT_SHOWN] * 6)),
    ("GET", "/api/v1/recipes/staleness", None, False, _row(401, *[200] * 6)),
    ("POST", "/api/v1/recipes", {"title": "Toast", "ingredients": ["bread"]}, False, _row(401, *[201] * 6)),
    ("GET", "/api/v1/recipes/{recipe}", None, False, _row(401, 200, 404, 200, 404, 200, 200)),
    (
        "PUT",
        "/api/v1/recipes/{recipe}",
        {"title": "Toast", "ingredients": ["bread"]},
        False,
        _row(401, 200, 404, 403, 404, 200, 200),
    ),
    ("PATCH", "/api/v1/recipes/{recipe}", {"title": "Renamed"}, False, _row(401, 200, 404, 403, 404, 200, 200)),
    ("DELETE", "/api/v1/recipes/{recipe}", None, False, _row(401, 204, 404, 403, 404, 204, 204)),
    (
        "POST",
        "/api/v1/recipes/{recipe}/tag",
        {"categories": ["cuisine"], "k": 1},
        True,
        _row(401, 200, 404, 403, 404, 200, 200),
    ),
    ("GET", "/api/v1/recipes/{gold}", None, False, _row(401, 200, 404, 200, 404, 200, 200)),
    ("PATCH", "/api/v1/recipes/{gold}", {"title": "Renamed"}, False, _row(401, GOLD, 404, 403, 404, 200, 200)),
    (
        "PUT",
        "/api/v1/recipes/{gold}",
        {"title": "Toast", "ingredients": ["b"]},
        False,
        _row(401, GOLD, 404, 403, 404, 200, 200),
    ),
    ("DELETE", "/api/v1/recipes/{gold}", None, False, _row(401, GOLD, 404, 403, 404, KEPT, KEPT)),
    (
        "POST",
        "/api/v1/recipes/tag",
        {"recipe_ids": ["{recipe}"], "categories": ["cuisine"]},
        True,
        _row(401, 202, NOT_YOURS, NOT_YOURS, NOT_YOURS, 202, 202),
    ),
    ("GET", "/api/v1/jobs/{job}", None, False, _row(401, 200, 404, 200, 404, 200, 200)),
    ("PATCH", "/api/v1/jobs/{job}", {}, False, _row(401, *[405] * 6)),
    ("GET", "/api/v1/runs/{run}", None, False, _row(401, 200, 404, 200, 404, 200, 200)),
    ("DELETE", "/api/v1/runs/{run}", None, False, _row(401, *[405] * 6)),
    # Asking the judge needs the permission to add verdicts, which only the superuser has here; the source is
    # checked after who may ask, so the superuser gets the unknown source's 400 and nothing reaches a model.
    (
        "POST",
        "/api/v1/runs/{run}/judge",
        {"source": "matrix-no-such-source"},
        False,
        _row(401, 403, 404, 403, 404, 403, Cell(400, code="llm_not_configured")),
    ),
    (
        "POST",
        "/api/v1/tag",
        {"title": "Toast", "ingredients": ["bread", "butter"], "categories": ["cuisine"], "k": 1},
        True,
        _row(401, *[200] * 6),
    ),
    (
        "POST",
        "/api/v1/recipes/import",
        {"recipes": [{"id": "m-1", "title": "Soup", "ingredients": ["water"]}], "source": "matrix"},
        False,
        _row(401, 403, 403, 403, 403, 200, 200),
    ),
    # Feedback on a run: its owner (a client), and curators who may read it (a client is refused once curators
    # labelled the recipe: feedback/tests/test_api_run_feedback.py).
    (
        "POST",
        "/api/v1/runs/{run}/feedback",
        {"decisions": [{"category": "{category}", "tag": "{tag}", "decision": "accept"}]},
        False,
        _row(401, 201, 404, 201, 404, 201, 201),
    ),
    ("GET", "/api/v1/feedback", None, False, _row(401, 403, 403, 200, 403, 200, 200)),
    # Re-tagging jobs: staff with the RetagJob permissions (this staff may view them, not create or act on them).
    ("GET", "/api/v1/retag-jobs", None, False, _row(401, 403, 403, 403, 403, 200, 200)),
    (
        "POST",
        "/api/v1/retag-jobs",
        {"selection": {"kind": "category", "value": "matrix-no-such-category"}, "strategy": "similarity"},
        False,
        _row(401, 403, 403, 403, 403, 403, Cell(400, code="invalid_selection")),
    ),
    ("GET", "/api/v1/retag-jobs/{retag_job}", None, False, _row(401, 403, 403, 403, 403, 200, 200)),
    # The job is still queued: nothing to apply or roll back yet, and cancelling it is allowed.
    ("POST", "/api/v1/retag-jobs/{retag_job}/apply", None, False, _row(401, 403, 403, 403, 403, 403, RETAG_STATE)),
    ("POST", "/api/v1/retag-jobs/{retag_job}/rollback", None, False, _row(401, 403, 403, 403, 403, 403, RETAG_STATE)),
    ("POST", "/api/v1/retag-jobs/{retag_job}/cancel", None, False, _row(401, 403, 403, 403, 403, 403, 200)),
    ("GET", "/api/v1/categories", None, False, _row(401, *[200] * 6)),
    ("GET", "/api/v1/categories/{category}", None, False, _row(401, *[200] * 6)),
    ("DELETE", "/api/v1/categories/{category}", None, False, _row(401, *[405] * 6)),
]

# Pages, visited with a session; an anonymous visitor is sent to sign in.
#             anonymous  client A  client B  reviewer  staff w/o perms  staff  superuser
PAGES: list[tuple[str, dict[str, Cell]]] = [
    ("/", _row(302, SHOWN, NOT_SHOWN, SHOWN, NOT_SHOWN, SHOWN, SHOWN)),
    ("/runs/{run}/", _row(302, 200, 404, 200, 404, 200, 200)),
    ("/evaluations/", _row(302, 403, 403, 403, 200, 200, 200)),
    ("/feedback/reviewers/", _row(302, 403, 403, 403, 200, 200, 200)),
    # Staff with a permission on prompt versions (this staff has none of them).
    ("/prompts/playground/", _row(302, 403, 403, 403, 403, 403, 200)),
    ("/evaluations/drafts/", _row(302, 403, 403, 403, 403, 403, 200)),
    # Staff with the re-tagging permissions (this staff has none of them).
    ("/retag/jobs/", _row(302, 403, 403, 403, 403, 200, 200)),
    ("/retag/jobs/new/", _row(302, 403, 403, 403, 403, 403, 200)),
]


@dataclass(frozen=True)
class World:
    users: dict[str, Any]
    ids: dict[str, Any]


@pytest.fixture
def world(django_user_model: Any, reviewer: Any, api_client_user: Any, default_taxonomy_rows: Any) -> World:
    """The users of every role and client A's objects. `default_taxonomy_rows` is read before anything is
    written, so that a cell asking for the taxonomy later copies only the taxonomy's rows."""
    create = django_user_model.objects.create_user
    staff = create(username="staff-with-permissions", is_staff=True)
    app_label_codenames = [perm.split(".") for perm in STAFF_PERMISSIONS]
    staff.user_permissions.add(
        *[
            Permission.objects.get(content_type__app_label=app, codename=codename)
            for app, codename in app_label_codenames
        ]
    )
    users = {
        "anonymous": None,
        "client_a": api_client_user,
        "client_b": create(username="client-b"),
        "reviewer": reviewer,
        "staff_without_permissions": create(username="staff-without-permissions", is_staff=True),
        "staff": staff,
        "superuser": create(username="root", is_staff=True, is_superuser=True),
    }
    tag = TagFactory()
    recipe = recipe_create(title=A_TITLE, ingredients=["paprika", "beans"], instructions="", created_by=api_client_user)
    job = TaggingJob.objects.create(strategy=Strategy.SIMILARITY, total=1, created_by=api_client_user)
    run = TaggingRun.objects.create(
        recipe=recipe, job=job, strategy=Strategy.SIMILARITY, status=RunStatus.SUCCEEDED, created_by=api_client_user
    )
    TagAssignment.objects.create(run=run, tag=tag, score=0.9, rank=1)
    Recipe.objects.filter(pk=recipe.pk).update(current_run=run)
    gold = recipe_create(title="Labelled soup", ingredients=["water"], instructions="", created_by=api_client_user)
    GoldLabel.objects.create(recipe=gold, tag=tag, source=GoldLabelSource.IMPORT)
    retag_job = RetagJob.objects.create(selection={"kind": "all"}, strategy=Strategy.SIMILARITY, total=0)
    ids = {"recipe": recipe.pk, "gold": gold.pk, "run": run.pk, "job": job.pk, "tag": tag.slug}
    ids["retag_job"] = retag_job.pk
    ids["category"] = tag.category.slug
    return World(users=users, ids=ids)


def _fill(value: Any, ids: dict[str, Any]) -> Any:
    if isinstance(value, str):
        filled = value.format(**ids)
        return int(filled) if value.startswith("{") and filled.isdigit() else filled
    if isinstance(value, list):
        return [_fill(item, ids) for item in value]
    if isinstance(value, dict):
        return {key: _fill(item, ids) for key, item in value.items()}
    return value


def _shows_a(response: Any, world: World) -> bool:
    if response["Content-Type"].startswith("application/json"):
        return world.ids["recipe"] in [recipe["id"] for recipe in response.json()["results"]]
    return A_TITLE in response.content.decode()


def _assert_cell(response: Any, cell: Cell, world: World) -> None:
    assert response.status_code == cell.status, response.content[:500]
    if cell.shows_a is not None:
        assert _shows_a(response, world) is cell.shows_a
    if cell.code is not None:
        assert response.json()["error"]["code"] == cell.code


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    ("method", "path", "body", "needs_taxonomy", "cells"),
    MATRIX,
    ids=[f"{method} {path}" for method, path, *_ in MATRIX],
)
def test_the_api_answers_each_role_as_the_matrix_says(
    request: pytest.FixtureRequest,
    world: World,
    api_client_for: Callable[[Any], APIClient],
    role: str,
    method: str,
    path: str,
    body: Any,
    needs_taxonomy: bool,
    cells: dict[str, Cell],
) -> None:
    if needs_taxonomy:
        request.getfixturevalue("taxonomy")
    user = world.users[role]
    client = APIClient() if user is None else api_client_for(user)

    url = _fill(path, world.ids)
    if body is None:
        response = client.generic(method, url)
    else:
        response = getattr(client, method.lower())(url, _fill(body, world.ids), format="json")

    _assert_cell(response, cells[role], world)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("path", "cells"), PAGES, ids=[path for path, _ in PAGES])
def test_the_pages_answer_each_role_as_the_matrix_says(
    world: World, client: Client, role: str, path: str, cells: dict[str, Cell]
) -> None:
    if world.users[role] is not None:
        client.force_login(world.users[role])

    response = client.get(_fill(path, world.ids))

    _assert_cell(response, cells[role], world)


def test_the_matrix_covers_every_api_operation_the_schema_declares() -> None:
    from drf_spectacular.generators import SchemaGenerator

    document = SchemaGenerator().get_schema(request=None, public=True)
    declared = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if path.startswith("/api/v1/") and method in {"get", "post", "put", "patch", "delete"}
    }
    covered = set()
    for method, path, *_ in MATRIX:
        for placeholder, name in SCHEMA_NAMES.items():
            path = path.replace(placeholder, name)
        covered.add((method, path.split("?")[0]))

    assert declared - covered == set()


def test_a_gold_label_survives_every_attempt_of_the_matrix_to_delete_its_recipe(
    world: World, api_client_for: Callable[[Any], APIClient]
) -> None:
    gold = world.ids["gold"]

    statuses = [
        api_client_for(user).delete(f"/api/v1/recipes/{gold}").status_code
        for user in world.users.values()
        if user is not None
    ]

    assert statuses == [403, 404, 403, 404, 409, 409]
    assert Recipe.objects.filter(pk=gold).exists()
    assert GoldLabel.objects.filter(recipe_id=gold).count() == 1
