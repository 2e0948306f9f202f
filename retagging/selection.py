"""Which recipes a re-tagging job covers: a selection ({"kind", "value", "causes"}) checked and resolved to
recipe ids once, when the job is created, so the job does exactly those whatever changes meanwhile."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from autotagger.errors import DomainError
from retagging.models import SelectionKind
from tagging.models import Recipe, TagAssignment
from tagging.selectors import recipes_stale
from tagging.staleness import STALE_CAUSES
from taxonomy.models import Category, Tag


class InvalidSelection(DomainError):
    code = "invalid_selection"


@dataclass(frozen=True)
class Selection:
    kind: str
    value: Any = None
    causes: tuple[str, ...] | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "value": self.value}
        if self.causes is not None:
            data["causes"] = list(self.causes)
        return data


def selection_parse(*, selection: dict[str, Any]) -> Selection:
    """`selection` checked against the taxonomy and the recipes; raises InvalidSelection naming the problem."""
    if not isinstance(selection, dict):
        raise InvalidSelection("The selection must be an object with a kind.", details={"selection": selection})
    kind = selection.get("kind")
    value = selection.get("value")
    if kind not in SelectionKind.values:
        raise InvalidSelection(
            f"Unknown selection kind {kind!r}; choose one of {', '.join(SelectionKind.values)}.",
            details={"kind": kind},
        )
    if kind in (SelectionKind.ALL, SelectionKind.STALE):
        causes = selection.get("causes") if kind == SelectionKind.STALE else None
        if causes is not None:
            known = STALE_CAUSES
            if not isinstance(causes, list) or not causes or any(c not in known for c in causes):
                raise InvalidSelection(
                    f"Unknown staleness causes {causes!r}; choose among {', '.join(known)}.",
                    details={"causes": causes},
                )
            return Selection(kind=kind, causes=tuple(causes))
        return Selection(kind=kind)
    if not isinstance(value, str) or not value.strip():
        raise InvalidSelection(f"A {kind!r} selection needs a value.", details={"value": value})
    value = value.strip()
    if kind == SelectionKind.CATEGORY:
        if not Category.objects.filter(slug=value).exists():
            raise InvalidSelection(f"Unknown category {value!r}.", details={"value": value})
    elif kind == SelectionKind.TAG:
        category, _, slug = value.partition("/")
        if not slug or not Tag.objects.filter(category__slug=category, slug=slug).exists():
            raise InvalidSelection(
                f"Unknown tag {value!r}; give it as category/slug (cuisine/italian).", details={"value": value}
            )
    elif kind == SelectionKind.SOURCE:
        if not Recipe.objects.filter(source=value).exists():
            raise InvalidSelection(f"No recipe comes from the source {value!r}.", details={"value": value})
    elif kind == SelectionKind.CHANGED_SINCE:
        _since(value)
    return Selection(kind=kind, value=value)


def _since(value: str) -> datetime:
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value) if len(value) == 10 else None
        if day is None:
            raise InvalidSelection(
                f"{value!r} is not a date; give it as YYYY-MM-DD or an ISO 8601 date and time.",
                details={"value": value},
            )
        moment = datetime.combine(day, time.min)
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


def _current_tags(tags: QuerySet[Tag]) -> Exists:
    """Recipes whose current run has one of `tags`."""
    return Exists(TagAssignment.objects.filter(run_id=OuterRef("current_run_id"), tag__in=tags))


def selection_recipes(*, selection: Selection) -> QuerySet[Recipe]:
    """The recipes `selection` covers (checked by selection_parse)."""
    recipes = Recipe.objects.all()
    if selection.kind == SelectionKind.STALE:
        recipes = recipes_stale(causes=selection.causes)
    elif selection.kind == SelectionKind.CATEGORY:
        recipes = recipes.filter(_current_tags(Tag.objects.filter(category__slug=selection.value)))
    elif selection.kind == SelectionKind.TAG:
        category, _, slug = str(selection.value).partition("/")
        recipes = recipes.filter(_current_tags(Tag.objects.filter(category__slug=category, slug=slug)))
    elif selection.kind == SelectionKind.SOURCE:
        recipes = recipes.filter(source=selection.value)
    elif selection.kind == SelectionKind.CHANGED_SINCE:
        recipes = recipes.filter(updated_at__gte=_since(str(selection.value)))
    return recipes
