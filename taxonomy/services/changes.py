"""Changes to the taxonomy staff make: (de)activating, merging tags, and re-embedding what an edit changed."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import transaction
from django.utils import timezone

from autotagger.errors import DomainError
from taxonomy.models import Category, Tag
from taxonomy.services.versions import taxonomy_version_schedule
from taxonomy.tasks import tags_embed_task

logger = logging.getLogger(__name__)

EMBEDDED_FIELDS = frozenset({"name", "description", "synonyms"})

# How rows of the apps above the taxonomy (tagging's assignments, feedback's gold labels) move from a
# merged tag to the tag it is merged into. Those apps register them when they start: the taxonomy
# knows nothing of them. Each runs inside the merge's transaction, before the merged tag is deleted.
TagMergeHandler = Callable[[Tag, Tag], None]
_tag_merge_handlers: list[TagMergeHandler] = []


def tag_merge_handler_register(*, handler: TagMergeHandler) -> None:
    if handler not in _tag_merge_handlers:
        _tag_merge_handlers.append(handler)


class TaxonomyError(DomainError):
    """A taxonomy change that cannot be made; the message says why."""

    code = "invalid_taxonomy"


def tags_schedule_embedding(*, tag_ids: list[int]) -> None:
    """Queue a re-embedding of these tags once the surrounding transaction has committed."""
    if not tag_ids:
        return
    ids = sorted(set(tag_ids))
    # robust: a broker outage must not turn a saved edit into an error page. The tags stay stale
    # until the next tagging request or the periodic pass embeds them (see tags_needing_embedding).
    transaction.on_commit(lambda: tags_embed_task.delay(tag_ids=ids), robust=True)


def tag_changed_fields_need_embedding(*, changed_fields: list[str] | set[str]) -> bool:
    return bool(EMBEDDED_FIELDS.intersection(changed_fields))


def tags_set_active(*, tag_ids: list[int], active: bool) -> int:
    count = Tag.objects.filter(id__in=tag_ids).update(active=active, updated_at=timezone.now())
    # `.update()` sends no signal: say so here, or the change would go unversioned.
    taxonomy_version_schedule()
    return count


def categories_set_active(*, category_ids: list[int], active: bool) -> int:
    count = Category.objects.filter(id__in=category_ids).update(active=active, updated_at=timezone.now())
    taxonomy_version_schedule()
    return count


@transaction.atomic
def tag_merge(*, source: Tag, target: Tag) -> Tag:
    """Fold `source` into `target`: what other apps keep about it moves over (see
    tag_merge_handler_register), its name and synonyms become synonyms of `target`, and `source` is
    deleted. Both must be in the same category.
    """
    if source.pk == target.pk:
        raise TaxonomyError("A tag cannot be merged into itself.")
    if source.category_id != target.category_id:
        raise TaxonomyError(
            "Only tags of the same category can be merged.",
            details={"source": str(source), "target": str(target)},
        )
    source = Tag.objects.select_for_update().get(pk=source.pk)
    target = Tag.objects.select_for_update().get(pk=target.pk)

    for handler in _tag_merge_handlers:
        handler(source, target)

    known = {s.lower() for s in target.synonyms} | {target.name.lower()}
    for word in [source.name, *source.synonyms]:
        if word.lower() not in known:
            target.synonyms.append(word)
            known.add(word.lower())
    if not target.description and source.description:
        target.description = source.description
    target.save(update_fields=["synonyms", "description", "updated_at"])
    source.delete()
    tags_schedule_embedding(tag_ids=[target.pk])
    return target
