"""Tag embeddings (what the similarity tagger compares recipes with), computed on the worker or at once."""

from __future__ import annotations

import logging

from django.utils import timezone

from autotagger.embeddings import EmbeddingMode, embedding_model_name, embeddings_create
from taxonomy.models import Tag, TagEmbedding
from taxonomy.selectors import tags_needing_embedding

logger = logging.getLogger(__name__)


def tags_embed(*, tag_ids: list[int] | None = None, mode: str = EmbeddingMode.FULL) -> int:
    """(Re)compute embeddings: of `tag_ids`, or of every tag whose vector is missing or from another model.
    With `mode` "fast", the fast model's vectors (kept in TagEmbedding, never in Tag.embedding).

    Returns how many tags were embedded. Safe to run twice.
    """
    model = embedding_model_name(mode=mode)
    if tag_ids is None:
        tags = list(tags_needing_embedding(model=model))
    else:
        tags = list(Tag.objects.filter(id__in=tag_ids).order_by("id"))
    if not tags:
        return 0
    batch = embeddings_create(texts=[tag.embedding_text for tag in tags], mode=mode)
    # Stamped after the read, so that the vector never looks older than the text it was made from.
    now = timezone.now()
    if mode == EmbeddingMode.FAST:
        TagEmbedding.objects.bulk_create(
            [
                TagEmbedding(tag=tag, model=batch.model, embedding=vector, embedded_at=now)
                for tag, vector in zip(tags, batch.vectors, strict=True)
            ],
            update_conflicts=True,
            unique_fields=["tag", "model"],
            update_fields=["embedding", "embedded_at"],
            batch_size=500,
        )
        return len(tags)
    for tag, vector in zip(tags, batch.vectors, strict=True):
        tag.embedding = vector
        tag.embedding_model = batch.model
        tag.embedded_at = now
    Tag.objects.bulk_update(tags, ["embedding", "embedding_model", "embedded_at"], batch_size=500)
    logger.info("Embedded %d tags with %s in %.2fs", len(tags), batch.model, batch.seconds)
    return len(tags)
