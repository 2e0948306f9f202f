"""taxonomy.tasks on a real Celery worker: re-embedding is queued only once the transaction commits."""

from __future__ import annotations

import subprocess
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from autotagger.embeddings import embedding_create
from conftest import wait_for
from taxonomy.models import Tag
from taxonomy.services.changes import tags_schedule_embedding

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]


class _Rollback(Exception):
    pass


def _embedded_since(tag: Tag, moment: datetime | None) -> bool:
    tag.refresh_from_db()
    return tag.embedded_at != moment


def _set_embedding(tag: Tag, *, vector: np.ndarray, embedded_at: datetime) -> None:
    Tag.objects.filter(pk=tag.pk).update(embedding=vector, embedded_at=embedded_at)
    tag.refresh_from_db()


def _change_and_schedule_then_roll_back(tag: Tag) -> None:
    with transaction.atomic():
        tag.description = "Sicilian street food: arancini, panelle, cannoli and granita."
        tag.save(update_fields=["description", "updated_at"])
        tags_schedule_embedding(tag_ids=[tag.pk])
        raise _Rollback


def test_the_worker_re_embeds_a_tag_after_the_transaction_commits(
    celery_worker_process: subprocess.Popen[bytes], taxonomy: Any
) -> None:
    tag = Tag.objects.get(category__slug="cuisine", slug="italian")
    before_vector = np.asarray(tag.embedding)
    before_at = tag.embedded_at

    with transaction.atomic():
        tag.description = "Sicilian street food: arancini, panelle, cannoli and granita."
        tag.save(update_fields=["description", "updated_at"])
        tags_schedule_embedding(tag_ids=[tag.pk])

    assert wait_for(lambda: _embedded_since(tag, before_at), timeout=60), "the worker did not embed the tag"
    after_vector = np.asarray(tag.embedding)
    assert not np.allclose(after_vector, before_vector)
    assert float(after_vector @ embedding_create(text=tag.embedding_text)) == pytest.approx(1.0, abs=1e-4)
    assert tag.embedding_model == settings.EMBEDDING_MODEL
    assert tag.embedded_at > before_at


def test_a_schedule_inside_a_rolled_back_transaction_enqueues_nothing(
    celery_worker_process: subprocess.Popen[bytes], taxonomy: Any
) -> None:
    long_ago = timezone.now() - timedelta(days=30)
    # A vector the worker would never compute, so that any re-embedding shows.
    marker = np.zeros(settings.EMBEDDING_DIMENSIONS, dtype=np.float32)
    marker[0] = 1.0
    tag = Tag.objects.get(category__slug="cuisine", slug="italian")
    _set_embedding(tag, vector=marker, embedded_at=long_ago)
    sentinel = Tag.objects.get(category__slug="cuisine", slug="french")
    _set_embedding(sentinel, vector=np.asarray(sentinel.embedding), embedded_at=long_ago)

    with pytest.raises(_Rollback):
        _change_and_schedule_then_roll_back(tag)
    # The worker takes one task at a time in queue order: once it has done a task queued after the
    # rollback, it would have done one queued by it too.
    with transaction.atomic():
        tags_schedule_embedding(tag_ids=[sentinel.pk])

    assert wait_for(lambda: _embedded_since(sentinel, long_ago), timeout=60), "the worker did not run"
    tag.refresh_from_db()
    assert tag.embedded_at == long_ago
    assert np.array_equal(np.asarray(tag.embedding), marker)
    assert tag.description != "Sicilian street food: arancini, panelle, cannoli and granita."
