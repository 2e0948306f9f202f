"""Input of the review pages: the queue's filters, a recipe's review, bulk accept."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.http import QueryDict

from feedback.models import FeedbackDecision
from feedback.selectors import DEFAULT_QUEUE_SORT, QUEUE_SORTS, SIMILARITY_SOURCE, QueueFilters, SuggestedGroup
from feedback.services.reviews import TagDecision
from prompts.selectors import prompt_versions_for_tagging
from prompts.sources import llm_sources_available
from tagging.models import Strategy
from taxonomy.models import Tag
from taxonomy.selectors import categories_list

ANY = [("", "Any")]


class ReviewQueueFilterForm(forms.Form):
    strategy = forms.ChoiceField(required=False, choices=ANY + list(Strategy.choices))
    category = forms.ChoiceField(required=False)
    prompt_version = forms.TypedChoiceField(required=False, coerce=int, empty_value=None)
    source = forms.ChoiceField(required=False)
    score_min = forms.FloatField(required=False, min_value=0.0, max_value=1.0, label="Score from")
    score_max = forms.FloatField(required=False, min_value=0.0, max_value=1.0, label="Score to")
    date_from = forms.DateField(required=False, label="Run from", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="Run to", widget=forms.DateInput(attrs={"type": "date"}))
    sort = forms.ChoiceField(required=False, choices=[(key, label) for key, (label, _) in QUEUE_SORTS.items()])

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        fields = self.fields
        fields["category"].choices = ANY + [(c.slug, c.name) for c in categories_list()]  # type: ignore[attr-defined]
        fields["prompt_version"].choices = ANY + [(v.pk, v.label) for v in prompt_versions_for_tagging()]  # type: ignore[attr-defined]
        sources = [(name, name) for name in llm_sources_available()]
        fields["source"].choices = [*ANY, (SIMILARITY_SOURCE, "similarity (no model)"), *sources]  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        low, high = data.get("score_min"), data.get("score_max")
        if low is not None and high is not None and low > high:
            raise ValidationError("The score range is empty: 'Score from' is above 'Score to'.")
        start, end = data.get("date_from"), data.get("date_to")
        if start is not None and end is not None and start > end:
            raise ValidationError("The date range is empty: 'Run from' is after 'Run to'.")
        return data

    def filters(self) -> QueueFilters:
        data = self.cleaned_data
        return QueueFilters(
            strategy=data.get("strategy") or "",
            category=data.get("category") or "",
            prompt_version_id=data.get("prompt_version"),
            score_min=data.get("score_min"),
            score_max=data.get("score_max"),
            source=data.get("source") or "",
            date_from=data.get("date_from"),
            date_to=data.get("date_to"),
        )

    def sort_key(self) -> str:
        return self.cleaned_data.get("sort") or DEFAULT_QUEUE_SORT


def queue_filters_from(query: str | QueryDict) -> tuple[QueueFilters, str]:
    """The filters and sort in a query string, the invalid ones dropped (a link carried them here; the queue
    page itself reports them)."""
    data = QueryDict(query) if isinstance(query, str) else query
    form = ReviewQueueFilterForm(data)
    form.is_valid()
    for name in list(form.errors):
        form.cleaned_data.pop(name, None)
    return form.filters(), form.cleaned_data.get("sort") or DEFAULT_QUEUE_SORT


class BulkAcceptForm(forms.Form):
    min_score = forms.FloatField(min_value=0.0, max_value=1.0, label="Accept tags scored at least")
    confirm = forms.BooleanField(required=False)


class RecipeReviewForm(forms.Form):
    """One radio group per suggested tag (`tag-<id>`: accept, reject, or empty for no decision) and `add`: tags
    to add, repeatable, each a tag id, `category/slug` or an exact tag name, or several separated by commas."""

    run = forms.IntegerField(required=False, widget=forms.HiddenInput)
    queue = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, groups: list[SuggestedGroup], addable: list[Tag], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.suggested = [tag for group in groups for tag in group.tags]
        self.addable = addable
        for tag in self.suggested:
            self.fields[f"tag-{tag.tag_id}"] = forms.ChoiceField(
                required=False,
                choices=[("", "Undecided"), (FeedbackDecision.ACCEPT, "Accept"), (FeedbackDecision.REJECT, "Reject")],
            )

    def _resolve(self, reference: str) -> Tag:
        by_id = {tag.pk: tag for tag in self.addable}
        if reference.isdigit() and int(reference) in by_id:
            return by_id[int(reference)]
        lowered = reference.lower()
        by_path = [t for t in self.addable if f"{t.category.slug}/{t.slug}" == lowered]
        if by_path:
            return by_path[0]
        by_name = [t for t in self.addable if t.name.lower() == lowered]
        if len(by_name) == 1:
            return by_name[0]
        if len(by_name) > 1:
            paths = ", ".join(f"{t.category.slug}/{t.slug}" for t in by_name)
            raise ValidationError(f"{reference!r} names several tags ({paths}): give its category/slug.")
        raise ValidationError(f"No active tag is called {reference!r}: pick one from the list.")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        raw = self.data.getlist("add") if hasattr(self.data, "getlist") else []
        references = [part.strip() for value in raw for part in str(value).split(",") if part.strip()]
        decided = {tag.tag_id: data.get(f"tag-{tag.tag_id}") or "" for tag in self.suggested}
        added: list[int] = []
        for reference in references:
            try:
                tag = self._resolve(reference)
            except ValidationError as exc:
                self.add_error(None, exc)
                continue
            if tag.pk in decided:
                if decided[tag.pk] == FeedbackDecision.REJECT:
                    self.add_error(None, f"{tag.name} is both rejected and added: choose one.")
                # Adding a suggested tag is accepting it.
                decided[tag.pk] = FeedbackDecision.ACCEPT
            elif tag.pk not in added:
                added.append(tag.pk)
        data["decisions"] = [TagDecision(tag_id=i, decision=d) for i, d in decided.items() if d] + [
            TagDecision(tag_id=i, decision=FeedbackDecision.ADD) for i in added
        ]
        return data
