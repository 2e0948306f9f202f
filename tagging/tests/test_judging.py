"""The LLM judge (tagging.services.judging): one call per run, tags shuffled by the run's seed, the reply
constrained and validated, verdicts stored per assignment and shown on the run page."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from autotagger.redis import redis_client
from prompts.judging import judge_tags_shuffled
from prompts.models import DEFAULT_JUDGING_PROMPT, LLMCall, LLMSource
from prompts.tests.openai_server import OpenAIServer
from tagging.models import RunStatus, TagAssignment, TaggingRun, TagJudgement
from tagging.services.judging import JudgeError, run_judge
from tagging.tasks import run_judge_task
from tagging.tests.conftest import TagAssignmentFactory, TaggingRunFactory
from tagging.tests.helpers import user_prompt
from taxonomy.models import Tag

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("taxonomy")]

LABEL = f"{DEFAULT_JUDGING_PROMPT} v1"


@pytest.fixture
def judge(openai_server: OpenAIServer, llm_settings: Any) -> LLMSource:
    return LLMSource.objects.create(
        name="judge", base_url=openai_server.url, model="test-model", probed_at=timezone.now()
    )


def run_with(*slugs: str, **fields: Any) -> TaggingRun:
    run = TaggingRunFactory(status=RunStatus.SUCCEEDED, **fields)
    for rank, slug in enumerate(slugs, start=1):
        TagAssignmentFactory(run=run, tag=Tag.objects.get(slug=slug), rank=rank, score=0.9)
    return run


def keys_asked(request: dict[str, Any]) -> list[str]:
    return list(request["response_format"]["json_schema"]["schema"]["properties"])


def test_each_tag_gets_the_verdict_and_reason_the_model_gave(judge: LLMSource, openai_server: OpenAIServer) -> None:
    run = run_with("italian", "french")
    openai_server.reply_json(
        {
            "cuisine/italian": {"verdict": "relevant", "reason": "Carbonara is Roman."},
            "cuisine/french": {"verdict": "not_relevant", "reason": "Nothing French here."},
        }
    )

    result = run_judge(run=run, source="judge")

    stored = {
        j.assignment.tag.slug: (j.verdict, j.reason, j.prompt_version, j.source)
        for j in TagJudgement.objects.select_related("assignment__tag")
    }
    assert stored == {
        "italian": ("relevant", "Carbonara is Roman.", LABEL, "judge"),
        "french": ("not_relevant", "Nothing French here.", LABEL, "judge"),
    }
    assert (result.judged, result.missing, result.unknown_dropped, result.seed) == (2, 0, 0, run.pk)
    call = LLMCall.objects.get()
    assert (call.source, call.prompt_version, call.run_id, call.outcome) == ("judge", LABEL, run.pk, "ok")


def test_the_reply_is_constrained_to_the_runs_tags_and_the_verdicts(
    judge: LLMSource, openai_server: OpenAIServer
) -> None:
    run = run_with("italian", "french")
    openai_server.reply_json({"cuisine/italian": {"verdict": "relevant", "reason": ""}})

    run_judge(run=run, source="judge")

    schema = openai_server.requests[0]["response_format"]["json_schema"]["schema"]
    assert sorted(schema["required"]) == ["cuisine/french", "cuisine/italian"]
    assert schema["properties"]["cuisine/french"]["properties"]["verdict"]["enum"] == [
        "relevant",
        "partly",
        "not_relevant",
    ]


def test_unknown_tags_are_dropped_and_missing_verdicts_counted(judge: LLMSource, openai_server: OpenAIServer) -> None:
    run = run_with("italian", "french")
    openai_server.reply_json(
        {"cuisine/italian": {"verdict": "partly", "reason": "Close."}, "cuisine/spanish": {"verdict": "relevant"}}
    )

    result = run_judge(run=run, source="judge")

    assert (result.judged, result.missing, result.unknown_dropped) == (1, 1, 1)
    assert list(TagJudgement.objects.values_list("assignment__tag__slug", "verdict")) == [("italian", "partly")]


def test_the_tags_are_listed_in_the_order_of_the_runs_seed_and_each_position_is_recorded(
    judge: LLMSource, openai_server: OpenAIServer
) -> None:
    slugs = ("italian", "french", "spanish", "greek", "indian", "chinese", "japanese")
    first, second = run_with(*slugs), run_with(*slugs)
    openai_server.reply_computed(lambda request: dict.fromkeys(keys_asked(request), "relevant"), times=3)

    run_judge(run=first, source="judge")
    run_judge(run=second, source="judge")
    run_judge(run=first, source="judge")

    orders = [keys_asked(request) for request in openai_server.requests]
    assert orders[0] == orders[2]
    assert orders[0] != orders[1]
    assert orders[0] == [tag.key for tag in judge_tags_shuffled(_judged(first), seed=first.pk)]
    assert f"- {orders[1][0]}: " in user_prompt(openai_server.requests[1]).split("Answer keys")[0]
    positions = dict(
        TagJudgement.objects.filter(assignment__run=first).values_list("assignment__tag__slug", "position")
    )
    assert [f"cuisine/{slug}" for slug in sorted(positions, key=positions.__getitem__)] == orders[0]
    # Judged twice with the same prompt and source: the verdicts were replaced, not added.
    assert TagJudgement.objects.filter(assignment__run=first).count() == len(slugs)
    assert set(TagJudgement.objects.values_list("shuffle_seed", flat=True)) == {first.pk, second.pk}


def _judged(run: TaggingRun) -> list[Any]:
    from prompts.judging import JudgedTag

    return [
        JudgedTag(
            category_slug=a.tag.category.slug, category_name=a.tag.category.name, slug=a.tag.slug, name=a.tag.name
        )
        for a in TagAssignment.objects.filter(run=run).select_related("tag__category")
    ]


def test_a_run_without_tags_is_not_sent(judge: LLMSource, openai_server: OpenAIServer) -> None:
    result = run_judge(run=run_with(), source="judge")

    assert (result.judged, result.calls) == (0, 0)
    assert openai_server.requests == []


def test_a_run_that_has_not_succeeded_is_refused(judge: LLMSource) -> None:
    with pytest.raises(JudgeError, match="has not succeeded"):
        run_judge(run=TaggingRunFactory(status=RunStatus.FAILED), source="judge")


def test_the_run_page_shows_each_tags_verdict_beside_it(
    judge: LLMSource, openai_server: OpenAIServer, staff: Any
) -> None:
    run = run_with("italian", "french", created_by=staff)
    openai_server.reply_json(
        {
            "cuisine/italian": {"verdict": "relevant", "reason": "Carbonara is Roman."},
            "cuisine/french": {"verdict": "not_relevant", "reason": "Nothing <b>French</b> here."},
        }
    )
    run_judge(run=run, source="judge")
    browser = Client()
    browser.force_login(staff)

    html = browser.get(reverse("dashboard:run-detail", args=[run.pk])).content.decode()

    assert 'class="judgement judgement-relevant"' in html
    assert "Carbonara is Roman." in html
    assert "Nothing &lt;b&gt;French&lt;/b&gt; here." in html
    assert f"{LABEL} · judge" in html


@pytest.fixture
def own_queue(settings: Any) -> Iterator[str]:
    """A queue no worker consumes, that this process sends to: what was queued stays there to be read."""
    queue = f"autotagger-test-unconsumed-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    yield queue
    redis_client().delete(queue)


def test_the_admin_action_queues_the_judge_for_each_succeeded_run_only(own_queue: str, admin_client: Client) -> None:
    judged = run_with("italian")
    failed = TaggingRunFactory(status=RunStatus.FAILED)

    response = admin_client.post(
        reverse("admin:tagging_taggingrun_changelist"),
        {"action": "judge_tags", "_selected_action": [judged.pk, failed.pk]},
        follow=True,
    )

    messages = [m["headers"] for m in map(json.loads, redis_client().lrange(own_queue, 0, -1))]
    assert [(m["task"], m["argsrepr"]) for m in messages] == [("tagging.run_judge", "()")]
    assert f"'run_id': {judged.pk}" in messages[0]["kwargsrepr"]
    assert "1 run(s) queued for the LLM judge" in response.content.decode()
    assert "1 not succeeded" in response.content.decode()


def test_the_admin_action_needs_the_permission_to_add_verdicts(client: Client, django_user_model: Any) -> None:
    viewer = django_user_model.objects.create_user(username="viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_taggingrun"))
    client.force_login(viewer)
    run_with("italian")

    response = client.get(reverse("admin:tagging_taggingrun_changelist"))

    assert response.status_code == 200
    assert "judge_tags" not in response.content.decode()


def test_the_judge_task_stores_the_verdicts_of_a_run(judge: LLMSource, openai_server: OpenAIServer) -> None:
    run = run_with("italian")
    openai_server.reply_json({"cuisine/italian": {"verdict": "partly", "reason": "Roman, mostly."}})

    run_judge_task.run(run_id=run.pk, source="judge")

    assert TagJudgement.objects.get().verdict == "partly"


def test_the_judge_task_leaves_a_run_without_verdicts_when_the_model_fails(
    judge: LLMSource, openai_server: OpenAIServer
) -> None:
    run = run_with("italian")
    for _ in range(10):
        openai_server.reply_status(500)

    run_judge_task.run(run_id=run.pk, source="judge")

    assert not TagJudgement.objects.exists()
    assert TagAssignment.objects.filter(run=run).count() == 1
