"""A draft of the tagging prompt run over labelled data from the playground (/evaluations/drafts/): two evaluation
jobs on the same data, the draft's and the active version's, against a scripted OpenAI-compatible server that
answers the draft like an oracle and the active version carelessly; the comparison page; the data a staff user
picks (an upload, a shared dataset, labelled recipes of the database); permissions; nothing stored as tags."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from conftest import wait_for
from feedback.dispatch import evaluation_job_enqueue
from feedback.evaluation.jobs import evaluation_job_run_here
from feedback.models import EvaluationItem, EvaluationJob, EvaluationJobStatus, GoldLabel
from feedback.services.draft_evaluation import draft_evaluation_start
from feedback.tests.conftest import GoldLabelFactory
from prompts.gateway import LLMRejected
from prompts.models import DEFAULT_TAGGING_PROMPT, LLMCall, LLMSource, PromptVersion
from prompts.rendering import RECIPE_CLOSE, RECIPE_OPEN
from prompts.selectors import prompt_version_active
from prompts.tests.openai_server import OpenAIServer
from tagging.models import Recipe, TagAssignment, TaggingRun
from tagging.tests.conftest import RecipeFactory
from taxonomy.models import Tag

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("taxonomy")]

NEW = "/evaluations/drafts/"
DRAFT_MARK = "DRAFT WORDING."
# Written for these tests: (title, ingredients, instructions, cuisine).
RECIPES = [
    ("Spaghetti al Pomodoro", ["spaghetti", "tomatoes", "basil"], "Boil pasta, toss with sauce.", "Italian"),
    ("Chicken Tikka", ["chicken", "yoghurt", "garam masala"], "Marinate and grill.", "Indian"),
    ("Beef Tacos", ["tortillas", "beef", "salsa"], "Fry beef, fill tortillas.", "Mexican"),
]
TITLE = re.compile(r"Title: (.+)")


def _jsonl(recipes: list[tuple[str, list[str], str, str]] = RECIPES) -> bytes:
    lines = [
        json.dumps({"id": f"r{i}", "title": t, "ingredients": ing, "instructions": ins, "tags": {"cuisine": [c]}})
        for i, (t, ing, ins, c) in enumerate(recipes)
    ]
    return ("\n".join(lines) + "\n").encode()


def _active() -> PromptVersion:
    return PromptVersion.objects.get(prompt__name=DEFAULT_TAGGING_PROMPT, is_active=True)


def _system(request: dict[str, Any]) -> str:
    return str(request["messages"][0]["content"])


def _offered(request: dict[str, Any]) -> dict[str, list[str]]:
    schema = request["response_format"]["json_schema"]["schema"]
    return {slug: spec["items"]["properties"]["tag"]["enum"] for slug, spec in schema["properties"].items()}


def _title(request: dict[str, Any]) -> str:
    user = next(m["content"] for m in request["messages"] if m["role"] == "user")
    found = TITLE.search(user[user.rindex(RECIPE_OPEN) : user.rindex(RECIPE_CLOSE)])
    assert found
    return found.group(1).strip()


def draft_knows_active_guesses(request: dict[str, Any]) -> dict[str, Any]:
    """The draft's wording gets each recipe's gold cuisine; the active version's the first allowed tag."""
    gold = {t: c.lower() for t, _, _, c in RECIPES}.get(_title(request), "")
    if _system(request).startswith(DRAFT_MARK):
        picks = {slug: [gold] if gold in allowed else [] for slug, allowed in _offered(request).items()}
    else:
        picks = {slug: [allowed[0]] for slug, allowed in _offered(request).items()}
    return {slug: [{"tag": t, "reason": "r", "confidence": 0.9} for t in tags] for slug, tags in picks.items()}


def _form(**fields: Any) -> dict[str, Any]:
    active = _active()
    return {
        "action": "start",
        "version": active.pk,
        "system_template": f"{DRAFT_MARK} {active.system_template}",
        "user_template": active.user_template,
        "source": "default",
        "k": 1,
        "categories": ["cuisine"],
        "over": "upload",
        "limit": 20,
        **fields,
    }


def _upload(tmp_path: Path, content: bytes = b"") -> Any:
    path = tmp_path / "cuisines.jsonl"
    path.write_bytes(content or _jsonl())
    return path.open("rb")


@pytest.fixture
def one_at_a_time(settings: Any) -> Any:
    # The test's transaction is invisible to other connections: answers are asked from this thread.
    settings.EVALUATION_LLM_CONCURRENCY = 1
    return settings


def _both_run(draft: EvaluationJob) -> tuple[EvaluationJob, EvaluationJob]:
    assert draft.compared_with is not None
    active = evaluation_job_run_here(job_id=draft.compared_with.pk)
    return evaluation_job_run_here(job_id=draft.pk), active


def test_staff_run_a_draft_over_an_uploaded_dataset_and_see_it_beside_the_active_version(
    llm_settings: Any, openai_server: OpenAIServer, one_at_a_time: Any, staff_browser: Client, tmp_path: Path
) -> None:
    stored = (
        TaggingRun.objects.count(),
        TagAssignment.objects.count(),
        GoldLabel.objects.count(),
        Recipe.objects.count(),
    )
    openai_server.reply_computed(draft_knows_active_guesses, times=2 * len(RECIPES))

    with _upload(tmp_path) as upload:
        response = staff_browser.post(NEW, _form(upload=upload))

    assert response.status_code == 302, response.content.decode()[:3000]
    draft = EvaluationJob.objects.get(compared_with__isnull=False)
    assert response["Location"] == f"/evaluations/drafts/{draft.pk}/"
    running = staff_browser.get(response["Location"]).content.decode()
    assert running.count("data-job-url") == 2, "both jobs' progress bars poll while they run"
    draft, active = _both_run(draft)
    assert (draft.status, active.status) == (EvaluationJobStatus.SUCCEEDED, EvaluationJobStatus.SUCCEEDED)
    assert draft.prompt_label == f"draft from {_active().label}"
    assert (active.prompt_label, active.prompt_version_id) == (_active().label, _active().pk)
    assert draft.dataset_sha256 == active.dataset_sha256
    asked = [_system(r).startswith(DRAFT_MARK) for r in openai_server.requests]
    assert sorted(asked) == [False] * len(RECIPES) + [True] * len(RECIPES)
    assert draft.run is not None
    assert active.run is not None
    assert draft.run.prompt_version == f"draft from {_active().label}"
    assert draft.run.metrics["overall"]["f1"] == 1.0
    assert active.run.metrics["overall"]["f1"] < 0.5
    page = staff_browser.get(f"/evaluations/drafts/{draft.pk}/").content.decode()
    assert "data-job-url" not in page, "nothing left to poll"
    cuisine = page.split('<th scope="row">cuisine</th>')[1].split("</tr>")[0]
    cells = re.findall(r'<td class="num">([^<]*)</td>', cuisine)
    assert cells[:3] == ["1.000", "1.000", "1.000"]
    assert float(cells[5]) == pytest.approx(active.run.metrics["categories"]["cuisine"]["f1"], abs=1e-3)
    assert "badge badge-succeeded" in cuisine, "the draft's gain is marked"
    # Per recipe: the scripted server's 100 prompt and 20 completion tokens, priced 0.5 and 1.5 per 1k.
    assert page.count("100.0 prompt · 20.0 completion") == 2
    assert page.count("$0.080000") == 2
    # Nothing the playground runs is stored as tags.
    assert stored == (
        TaggingRun.objects.count(),
        TagAssignment.objects.count(),
        GoldLabel.objects.count(),
        Recipe.objects.count(),
    )
    assert set(LLMCall.objects.values_list("run_id", flat=True)) == {None}


def test_the_draft_and_the_active_version_never_share_an_answer_and_each_reuses_its_own(
    llm_settings: Any, openai_server: OpenAIServer, one_at_a_time: Any
) -> None:
    active = _active()
    start = {
        "content": _jsonl(),
        "name": "cuisines",
        "draft_user": active.user_template,
        "draft_label": "draft from x",
        "source": None,
        "k": 1,
        "categories": ["cuisine"],
    }
    openai_server.reply_computed(draft_knows_active_guesses, times=2 * len(RECIPES))
    _both_run(draft_evaluation_start(**start, draft_system=f"{DRAFT_MARK} one").draft)
    assert len(openai_server.requests) == 2 * len(RECIPES)

    again, again_active = _both_run(draft_evaluation_start(**start, draft_system=f"{DRAFT_MARK} one").draft)

    assert len(openai_server.requests) == 2 * len(RECIPES), "the same draft and version were answered before"
    assert again.run is not None
    assert again_active.run is not None
    assert again.run.metrics["llm"]["cache_hits"] == len(RECIPES)
    assert again.run.metrics["overall"]["f1"] == 1.0
    openai_server.reply_computed(draft_knows_active_guesses, times=len(RECIPES))

    _both_run(draft_evaluation_start(**start, draft_system=f"{DRAFT_MARK} two").draft)

    assert len(openai_server.requests) == 3 * len(RECIPES), "another draft under the same label is asked again"


def test_the_failures_of_each_side_are_shown_beside_each_other(
    llm_settings: Any, openai_server: OpenAIServer, one_at_a_time: Any, staff_browser: Client, tmp_path: Path
) -> None:
    # The active version's job runs first (_both_run): its three answers, then the draft's, the first refused.
    openai_server.reply_computed(draft_knows_active_guesses, times=len(RECIPES))
    openai_server.reply_status(400, "This model does not exist")  # a client error: not retried
    openai_server.reply_computed(draft_knows_active_guesses, times=len(RECIPES) - 1)
    with _upload(tmp_path) as upload:
        staff_browser.post(NEW, _form(upload=upload))
    draft, _ = _both_run(EvaluationJob.objects.get(compared_with__isnull=False))

    page = staff_browser.get(f"/evaluations/drafts/{draft.pk}/").content.decode()

    draft_side, active_side = page.split('id="side-draft-card"')[1].split('id="side-active-card"')
    assert re.findall(r'<code class="tag-slug">(r\d)</code>', draft_side) == ["r0"]
    assert LLMRejected.default_message in draft_side
    assert "None." in active_side
    assert "2 of 3" in draft_side


def test_it_runs_over_the_most_recently_labelled_recipes_a_staff_user_selects(
    llm_settings: Any, staff_browser: Client
) -> None:
    older, newer, newest = (RecipeFactory(title=t, ingredients=["x"]) for t in ("Older", "Newer", "Newest"))
    RecipeFactory(title="Never labelled")
    for recipe, slug in ((older, "italian"), (newer, "mexican"), (newest, "indian")):
        GoldLabelFactory(recipe=recipe, tag=Tag.objects.get(category__slug="cuisine", slug=slug))

    response = staff_browser.post(NEW, _form(over="labelled", limit=2))

    assert response.status_code == 302, response.content.decode()[:3000]
    draft = EvaluationJob.objects.get(compared_with__isnull=False)
    lines = [json.loads(line) for line in bytes(draft.dataset_content).splitlines()]
    assert [(line["id"], line["tags"]) for line in lines] == [
        (f"recipe-{newest.pk}", {"cuisine": ["indian"]}),
        (f"recipe-{newer.pk}", {"cuisine": ["mexican"]}),
    ]
    assert draft.total == 2
    assert draft.dataset == "labelled-recipes-2-latest"
    assert EvaluationJob.objects.count() == 2


def test_recipes_chosen_by_id_must_be_labelled_ones_the_user_may_read(llm_settings: Any, staff_browser: Client) -> None:
    labelled = RecipeFactory(title="Labelled", ingredients=["x"])
    GoldLabelFactory(recipe=labelled, tag=Tag.objects.get(category__slug="cuisine", slug="italian"))
    unlabelled = RecipeFactory(title="Unlabelled", ingredients=["x"])

    refused = staff_browser.post(NEW, _form(over="labelled", recipe_ids=f"{labelled.pk}, {unlabelled.pk}"))
    accepted = staff_browser.post(NEW, _form(over="labelled", recipe_ids=str(labelled.pk)))

    assert refused.status_code == 400
    assert f"No labelled recipe you may read has the id(s) {unlabelled.pk}." in refused.content.decode()
    assert accepted.status_code == 302
    assert EvaluationJob.objects.get(compared_with__isnull=False).dataset == "labelled-recipes-1-by-id"


def test_it_offers_the_shared_datasets_only_when_their_folder_is_there(
    llm_settings: Any, staff_browser: Client, tmp_path: Path
) -> None:
    llm_settings.EVALUATION_DATASETS_DIR = tmp_path / "missing"
    assert "Shared dataset" not in staff_browser.get(NEW).content.decode()
    llm_settings.EVALUATION_DATASETS_DIR = tmp_path
    (tmp_path / "cuisines.jsonl").write_bytes(_jsonl())

    page = staff_browser.get(NEW).content.decode()
    response = staff_browser.post(NEW, _form(over="shared", shared="cuisines"))
    unknown = staff_browser.post(NEW, _form(over="shared", shared="../cuisines"))

    assert '<option value="cuisines">cuisines</option>' in page
    assert response.status_code == 302
    assert EvaluationJob.objects.get(compared_with__isnull=False).dataset == "cuisines"
    assert unknown.status_code == 400
    assert EvaluationJob.objects.count() == 2


def test_a_draft_that_cannot_be_rendered_is_refused_as_when_saving_and_nothing_starts(
    llm_settings: Any, staff_browser: Client, tmp_path: Path
) -> None:
    with _upload(tmp_path) as upload:
        response = staff_browser.post(NEW, _form(upload=upload, user_template="No recipe here, $nonsense."))

    assert response.status_code == 400
    page = response.content.decode()
    assert "$nonsense" in page
    assert "$recipe" in page
    assert not EvaluationJob.objects.exists()


def test_the_playground_brings_its_draft_here_to_choose_the_data(staff_browser: Client) -> None:
    playground = staff_browser.get("/prompts/playground/").content.decode()
    active = _active()

    response = staff_browser.post(
        NEW,
        {
            "action": "dataset",
            "version": active.pk,
            "system_template": "MY DRAFT $categories",
            "user_template": active.user_template,
            "source": "default",
            "k": "2",
            "categories": ["diet"],
        },
    )

    assert 'formaction="/evaluations/drafts/"' in playground
    assert response.status_code == 200
    page = response.content.decode()
    assert "MY DRAFT $categories</textarea>" in page
    assert 'value="diet" id="id_categories_' in page
    assert "checked" in page.split('value="diet"')[1][:80]
    assert "form-errors" not in page
    assert not EvaluationJob.objects.exists()


def _user(django_user_model: Any, name: str, *, is_staff: bool, perms: tuple[str, ...] = ()) -> Any:
    user = django_user_model.objects.create_user(username=name, password="pw", is_staff=is_staff)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="prompts", codename__in=perms))
    return user


@pytest.mark.parametrize(
    ("is_staff", "perms", "status"),
    [
        (False, ("view_promptversion", "add_promptversion"), 403),
        (True, (), 403),
        (True, ("view_promptversion",), 200),
    ],
)
def test_only_who_may_use_the_playground_runs_drafts_over_datasets_or_sees_them(
    client: Client, django_user_model: Any, is_staff: bool, perms: tuple[str, ...], status: int, llm_settings: Any
) -> None:
    started = draft_evaluation_start(
        content=_jsonl(),
        name="cuisines",
        draft_system=f"{DRAFT_MARK} $categories",
        draft_user=_active().user_template,
        draft_label="draft",
        source=None,
        k=1,
        categories=["cuisine"],
    )
    client.force_login(_user(django_user_model, "someone", is_staff=is_staff, perms=perms))

    assert client.get(NEW).status_code == status
    assert client.get(f"/evaluations/drafts/{started.draft.pk}/").status_code == status
    if status == 403:
        assert client.post(NEW, _form(over="labelled")).status_code == 403


def test_an_anonymous_visitor_is_sent_to_the_login_page(client: Client) -> None:
    assert client.get(NEW)["Location"].startswith("/accounts/login/")


def test_a_job_that_is_no_drafts_has_no_comparison_page(llm_settings: Any, staff_browser: Client) -> None:
    started = draft_evaluation_start(
        content=_jsonl(),
        name="cuisines",
        draft_system=f"{DRAFT_MARK} $categories",
        draft_user=_active().user_template,
        draft_label="draft",
        source=None,
        k=1,
        categories=["cuisine"],
    )

    assert staff_browser.get(f"/evaluations/drafts/{started.active.pk}/").status_code == 404


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_the_worker_runs_both_jobs_with_their_own_wording(
    celery_worker_process: Any, openai_server: OpenAIServer
) -> None:
    LLMSource.objects.create(name="scripted", base_url=openai_server.url, model="test-model", probed_at=timezone.now())
    openai_server.reply_computed(draft_knows_active_guesses, times=2 * len(RECIPES))
    # A transactional test may find the migrations' prompt versions flushed: the built-in prompt is then active.
    active_prompt = prompt_version_active()
    started = draft_evaluation_start(
        content=_jsonl(),
        name="cuisines",
        draft_system=f"{DRAFT_MARK} $categories",
        draft_user=active_prompt.user_template,
        draft_label=f"draft from {active_prompt.label}",
        source="scripted",
        k=1,
        categories=["cuisine"],
    )

    evaluation_job_enqueue(job=started.active)
    evaluation_job_enqueue(job=started.draft)

    done = (EvaluationJobStatus.SUCCEEDED, EvaluationJobStatus.FAILED)
    finished = wait_for(
        lambda: all(
            j.status in done for j in EvaluationJob.objects.filter(pk__in=[started.draft.pk, started.active.pk])
        ),
        timeout=120,
    )
    assert finished, "the worker did not finish both jobs within 120 s; see the test-worker log in .data/"
    draft = EvaluationJob.objects.select_related("run").get(pk=started.draft.pk)
    active = EvaluationJob.objects.select_related("run").get(pk=started.active.pk)
    assert draft.status == EvaluationJobStatus.SUCCEEDED, draft.error
    assert active.status == EvaluationJobStatus.SUCCEEDED, active.error
    assert draft.run is not None
    assert active.run is not None
    assert draft.run.metrics["overall"]["f1"] == 1.0
    assert active.run.metrics["overall"]["f1"] < 0.5
    assert sorted(_system(r).startswith(DRAFT_MARK) for r in openai_server.requests) == [False] * 3 + [True] * 3
    assert EvaluationItem.objects.filter(job=draft).count() == len(RECIPES)
    assert not TaggingRun.objects.exists()
