"""Runs waiting for review, made directly (no tagger): a succeeded run of a recipe with the given scores."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.test import Client

from tagging.models import RunStatus, TaggingRun
from tagging.tests.conftest import RecipeFactory, TagAssignmentFactory, TaggingRunFactory
from taxonomy.models import Tag


def waiting_run(
    scores: dict[Tag, float],
    *,
    recipe: Any = None,
    strategy: str = "llm",
    stats: dict[str, Any] | None = None,
    created_at: datetime | None = None,
    title: str = "Spaghetti carbonara",
    evidence: dict[str, Any] | None = None,
) -> TaggingRun:
    run = TaggingRunFactory(
        recipe=recipe or RecipeFactory(title=title),
        strategy=strategy,
        status=RunStatus.SUCCEEDED,
        stats=stats if stats is not None else ({"source": "default"} if strategy != "similarity" else {}),
    )
    for rank, (tag, score) in enumerate(sorted(scores.items(), key=lambda item: -item[1]), start=1):
        TagAssignmentFactory(run=run, tag=tag, score=score, rank=rank, evidence=evidence or {})
    if created_at is not None:
        TaggingRun.objects.filter(pk=run.pk).update(created_at=created_at)
        run.refresh_from_db()
    return run


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client
