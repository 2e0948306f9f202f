"""tagging.admin: staff follow Batch API batches (read-only) and what became of their runs."""

from __future__ import annotations

import pytest
from django.test.client import Client
from django.urls import reverse

from tagging.models import LLMBatch, LLMBatchItem, LLMBatchItemOutcome, LLMBatchStatus, RunStatus
from tagging.tests.conftest import TaggingRunFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def batch() -> LLMBatch:
    batch = LLMBatch.objects.create(
        source="openai", provider_batch_id="batch_abc123", status=LLMBatchStatus.COLLECTED, provider_status="expired"
    )
    outcomes = [LLMBatchItemOutcome.SUCCEEDED, LLMBatchItemOutcome.SUCCEEDED, LLMBatchItemOutcome.REQUEUED]
    for outcome in outcomes:
        run = TaggingRunFactory(strategy="llm", status=RunStatus.QUEUED)
        LLMBatchItem.objects.create(batch=batch, run=run, custom_id=f"run-{run.pk}", outcome=outcome)
    return batch


def test_the_batch_list_counts_each_batchs_runs_stored_and_re_queued(staff_browser: Client, batch: LLMBatch) -> None:
    page = staff_browser.get(reverse("admin:tagging_llmbatch_changelist"))

    assert page.status_code == 200
    row = page.context["cl"].result_list[0]
    assert (row.item_count, row.stored_count, row.requeued_count) == (3, 2, 1)
    assert "expired" in page.content.decode()


def test_a_batch_page_lists_its_runs_and_changes_nothing(staff_browser: Client, batch: LLMBatch) -> None:
    page = staff_browser.get(reverse("admin:tagging_llmbatch_change", args=[batch.pk]))
    add = staff_browser.get(reverse("admin:tagging_llmbatch_add"))

    assert page.status_code == 200
    content = page.content.decode()
    assert "batch_abc123" in content
    for item in batch.items.all():
        assert item.custom_id in content
    assert add.status_code == 403
