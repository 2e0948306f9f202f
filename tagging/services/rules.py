"""Ingredient rules applied to what a tagger chose: the one place every strategy's output passes through
before it is stored or returned. Gold labels never pass through here: what people say is kept as said."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from autotagger.recipe_text import RecipeText
from tagging.taggers.base import CategoryRequest, ScoredTag, TaggerOutput
from taxonomy.limits import MAX_TAGS_PER_CATEGORY
from taxonomy.models import Tag
from taxonomy.rules import RuleReader, TagRule, rule_text
from taxonomy.selectors import tag_rules


def rules_of_requests(*, requests: Sequence[CategoryRequest]) -> dict[int, TagRule]:
    """The rules of every tag of the requested categories, loaded once for tagging many recipes."""
    tag_ids = Tag.objects.filter(category_id__in=[r.category.pk for r in requests]).values_list("id", flat=True)
    return tag_rules(tag_ids=tag_ids)


def tags_ruled_out(
    *, recipe: RecipeText, tag_ids: Iterable[int], rules: Mapping[int, TagRule] | None = None
) -> dict[int, str]:
    """Tag id -> why `recipe` contradicts that tag's rules, for the tags among `tag_ids` that it does
    (`rules`: preloaded with `rules_of_requests`, else read now)."""
    if rules is None:
        rules = tag_rules(tag_ids=tag_ids)
    else:
        wanted = set(tag_ids)
        rules = {tag_id: rule for tag_id, rule in rules.items() if tag_id in wanted}
    if not rules:
        return {}
    reader = RuleReader(rule_text(recipe))
    broken = {tag_id: reader.broken(rule) for tag_id, rule in rules.items()}
    return {tag_id: reason for tag_id, reason in broken.items() if reason is not None}


def requests_widened(
    *, requests: Sequence[CategoryRequest], rules: Mapping[int, TagRule] | None = None
) -> list[CategoryRequest]:
    """The same requests with a larger k, for a tagger whose k only cuts its ranked list: rules then remove
    what the recipe contradicts and `output_apply_rules` cuts to each request's k, so a removed tag leaves its
    place to the next one above the threshold instead of a hole.

    Without `rules` k is the largest allowed. With `rules` (`rules_of_requests` of these requests) it is the
    request's k plus the number of the category's tags that have a rule, capped at that largest: only those
    can be removed, so the first k + that many of the ranked list always hold the k that are kept, and what is
    stored is the same as with the largest k; the tagger then builds evidence for far fewer tags."""
    if rules is None:
        return [replace(r, k=MAX_TAGS_PER_CATEGORY) for r in requests]
    ruled = Counter(
        Tag.objects.filter(pk__in=list(rules), category_id__in=[r.category.pk for r in requests]).values_list(
            "category_id", flat=True
        )
    )
    return [replace(r, k=min(MAX_TAGS_PER_CATEGORY, r.k + ruled[r.category.pk])) for r in requests]


def output_apply_rules(
    *,
    recipe: RecipeText,
    output: TaggerOutput,
    requests: Sequence[CategoryRequest],
    rules: Mapping[int, TagRule] | None = None,
) -> list[dict[str, Any]]:
    """Take the tags whose rules `recipe` breaks out of `output` and keep at most each request's k of the
    others (in place), each with the rule that let it through in its evidence ("rule"). Return the removed
    tags that were in line for a place, as a run keeps them: [{"category", "tag", "name", "score", "rule"}],
    in category and rank order."""
    if rules is None:
        rules = tag_rules(tag_ids=[t.tag_id for tags in output.tags.values() for t in tags])
    # Only the tags in line for a place are checked: the recipe's rule words are read once, and a tag after
    # the k-th kept one is never looked at.
    reader = RuleReader(rule_text(recipe) if rules else ())
    removed: list[dict[str, Any]] = []
    for request in requests:
        tags = output.tags.get(request.category.pk)
        if tags is None:
            continue
        kept: list[ScoredTag] = []
        for tag in tags:
            if len(kept) == request.k:
                break  # what comes after the last place was never going to be returned
            rule = rules.get(tag.tag_id)
            reason = reader.broken(rule) if rule is not None else None
            if reason is not None:
                removed.append(
                    {
                        "category": request.category.slug,
                        "tag": tag.slug,
                        "name": tag.name,
                        "score": tag.score,
                        "rule": reason,
                    }
                )
            else:
                passed = reader.kept(rule) if rule is not None else "no rule"
                kept.append(ScoredTag(tag.tag_id, tag.slug, tag.name, tag.score, {**tag.evidence, "rule": passed}))
        output.tags[request.category.pk] = kept
    return removed
