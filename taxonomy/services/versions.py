"""The taxonomy's versions: a new one is recorded, with a log of what changed and by whom, whenever a change to
what decides tags is committed. Runs record the version they read (tagging), which is how a recipe tagged
before a change is found to be stale.

Every path that changes the taxonomy ends in `taxonomy_version_schedule`: the model signals connected here
(saves and deletes of categories, tags and ingredient groups, a tag's excluded_by) and the services that write
with `.update()`, which sends no signal. The record itself runs once per transaction, after commit, and
compares snapshots, so a save that changed nothing that matters records nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import connection, transaction
from django.db.models.signals import m2m_changed, post_delete, post_save

from autotagger.actor import actor_current
from taxonomy.models import Category, IngredientGroup, Tag, TaxonomyVersion
from taxonomy.selectors import taxonomy_snapshot, taxonomy_version_latest

logger = logging.getLogger(__name__)

# Serialises recordings across processes: two concurrent ones would both compare with the same latest version.
_RECORD_LOCK = 0x7A78_0001

KINDS = {"categories": "category", "tags": "tag", "ingredient_groups": "ingredient_group"}


def taxonomy_changes(*, old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """What differs between two snapshots, readable: [{"kind", "action", "object", "fields"}], in a stable order."""
    changes: list[dict[str, Any]] = []
    for section, kind in KINDS.items():
        before, after = old.get(section, {}), new.get(section, {})
        for key in sorted(set(before) | set(after)):
            if key not in before:
                changes.append({"kind": kind, "action": "added", "object": key, "fields": []})
            elif key not in after:
                changes.append({"kind": kind, "action": "removed", "object": key, "fields": []})
            else:
                old_item, new_item = before[key], after[key]
                fields = sorted(name for name in {*old_item, *new_item} if old_item.get(name) != new_item.get(name))
                if fields:
                    changes.append({"kind": kind, "action": "changed", "object": key, "fields": fields})
    return changes


def taxonomy_version_record(*, user: Any = None) -> TaxonomyVersion | None:
    """Record the taxonomy as it is now as a new version, if it differs from the latest one (None otherwise)."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_RECORD_LOCK])
        latest = taxonomy_version_latest()
        snapshot = taxonomy_snapshot()
        old = latest.snapshot if latest is not None else {}
        changes = taxonomy_changes(old=old, new=snapshot)
        if latest is not None and not changes:
            return None
        version = TaxonomyVersion.objects.create(
            number=(latest.number + 1) if latest is not None else 1,
            changed_by=user if user is not None and user.is_authenticated else None,
            changes=changes,
            snapshot=snapshot,
        )
    logger.info("Taxonomy version %s recorded: %d changes", version.number, len(changes))
    return version


class _RecordAfterCommit:
    """The pending recording of the current transaction (one per transaction, whatever the number of saves)."""

    def __init__(self, user: Any) -> None:
        self.user = user
        self.done = False

    def __call__(self) -> None:
        self.done = True
        taxonomy_version_record(user=self.user)


def taxonomy_version_schedule(*, user: Any = None) -> None:
    """Record a new taxonomy version once the surrounding transaction commits (now, outside one), attributed to
    `user` or else to whoever is acting (autotagger.actor)."""
    user = user or actor_current()
    # A rolled-back transaction (or savepoint) drops its callbacks, so the list holds only live ones.
    for entry in connection.run_on_commit:
        callback = entry[1]  # (savepoint ids, callback, robust)
        if isinstance(callback, _RecordAfterCommit) and not callback.done:
            callback.user = callback.user or user
            return
    # robust: the change is committed; a failed recording is logged, and the next change records it.
    transaction.on_commit(_RecordAfterCommit(user), robust=True)


# The columns taxonomy_snapshot reads: a save of others only (a tag's embedding) cannot change the snapshot.
SNAPSHOT_COLUMNS = frozenset(
    {"slug", "name", "description", "active", "category", "synonyms", "required_terms", "terms", "exceptions"}
)


def _changed(sender: Any, **kwargs: Any) -> None:
    if kwargs.get("raw"):
        return  # loaddata: the fixture's rows are what they are
    update_fields = kwargs.get("update_fields")
    if update_fields is not None and not SNAPSHOT_COLUMNS.intersection(update_fields):
        return
    taxonomy_version_schedule()


def _excluded_by_changed(sender: Any, action: str, **kwargs: Any) -> None:
    if action in ("post_add", "post_remove", "post_clear"):
        taxonomy_version_schedule()


def taxonomy_version_signals_connect() -> None:
    for model in (Category, Tag, IngredientGroup):
        post_save.connect(_changed, sender=model, dispatch_uid=f"taxonomy_version_save_{model.__name__}")
        post_delete.connect(_changed, sender=model, dispatch_uid=f"taxonomy_version_delete_{model.__name__}")
    m2m_changed.connect(_excluded_by_changed, sender=Tag.excluded_by.through, dispatch_uid="taxonomy_version_m2m")
