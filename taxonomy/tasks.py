from __future__ import annotations

from celery import shared_task

from taxonomy.embedding import tags_embed


@shared_task(
    name="taxonomy.tags_embed",
    autoretry_for=(ConnectionError, TimeoutError),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=3,
    soft_time_limit=120,
    time_limit=180,
    # Not given back when its worker dies: beat embeds stale tags every few minutes, and a batch that kills
    # its worker must not be re-delivered for ever.
    reject_on_worker_lost=False,
)
def tags_embed_task(*, tag_ids: list[int] | None = None) -> int:
    """Recompute tag embeddings (all stale ones when `tag_ids` is None). Safe to run twice."""
    return tags_embed(tag_ids=tag_ids)
