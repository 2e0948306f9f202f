"""The review pages: the queue of runs waiting for a person, a recipe's review, bulk accept, and the tag search
the review page asks as the reviewer types. Reviewers and staff only."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from autotagger.errors import DomainError
from autotagger.permissions import can_change_gold_labelled_recipes
from feedback.forms import BulkAcceptForm, RecipeReviewForm, ReviewQueueFilterForm, queue_filters_from
from feedback.models import GoldLabel
from feedback.selectors import (
    QueueFilters,
    review_leased_elsewhere,
    review_progress,
    review_queue,
    review_run_latest,
    review_suggestions,
)
from feedback.services.leases import LeaseHeld, review_lease_take, review_next
from feedback.services.review_queue import review_bulk_accept, review_bulk_preview, review_page_submit
from tagging.models import Recipe, TaggingRun
from taxonomy.selectors import tags_addable, tags_search

QUEUE_PER_PAGE = 25
SEARCH_RESULTS = 12

View = Callable[..., HttpResponse]


def reviewer_required(view: View) -> View:
    """Anonymous users go to the login page; signed-in users who are neither reviewers nor staff get 403."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not can_change_gold_labelled_recipes(request.user):
            raise PermissionDenied("Reviewing tags is for reviewers and staff.")
        return view(request, *args, **kwargs)

    return login_required(wrapper)


def _query(filters: QueueFilters, sort: str | None = None, **extra: Any) -> str:
    values = filters.as_query()
    if sort:
        values["sort"] = sort
    values.update({key: value for key, value in extra.items() if value is not None})
    return urlencode(values)


def _with_query(url: str, query: str) -> str:
    return f"{url}?{query}" if query else url


@reviewer_required
@require_GET
def review_queue_page(request: HttpRequest) -> HttpResponse:
    form = ReviewQueueFilterForm(request.GET or None)
    valid = form.is_valid() if form.is_bound else True
    filters = form.filters() if form.is_bound and valid else QueueFilters()
    sort = form.sort_key() if form.is_bound and valid else "uncertainty"
    page = Paginator(review_queue(filters=filters, reviewer=request.user, sort=sort), QUEUE_PER_PAGE).get_page(
        request.GET.get("page")
    )
    filtered = filters != QueueFilters()
    context = {
        "form": form,
        "page": page,
        "runs": list(page.object_list),
        "overall": review_progress(),
        "progress": review_progress(filters=filters) if filtered else None,
        "leased_elsewhere": review_leased_elsewhere(filters=filters, reviewer=request.user),
        "query": _query(filters, sort),
        "filter_query": _query(filters),
        "filter_items": sorted(filters.as_query().items()),
        "bulk_form": BulkAcceptForm(initial={"min_score": 0.9}),
    }
    return render(request, "feedback/review_queue.html", context, status=200 if valid else 400)


@reviewer_required
@require_GET
def review_next_page(request: HttpRequest) -> HttpResponse:
    """Lease the least sure waiting recipe that matches the queue's filters and open it."""
    filters, sort = queue_filters_from(request.GET)
    skip = request.GET.get("skip", "")
    run = review_next(filters=filters, reviewer=request.user, skip_recipe_id=int(skip) if skip.isdigit() else None)
    if run is None:
        messages.info(request, "Nothing left to review here: every matching recipe is reviewed or taken.")
        return redirect(_with_query(reverse("review:queue"), _query(filters, sort)))
    return redirect(_with_query(reverse("review:recipe", kwargs={"recipe_id": run.recipe_id}), _query(filters)))


def _review_context(
    request: HttpRequest, recipe: Recipe, run: TaggingRun | None, form: RecipeReviewForm | None, **extra: Any
) -> dict[str, Any]:
    groups = review_suggestions(run=run, recipe_id=recipe.pk)
    addable = list(tags_addable())
    if form is None:
        queue = urlencode(request.GET.dict()) if request.GET else ""
        filters, _ = queue_filters_from(queue)
        form = RecipeReviewForm(
            initial={"run": run.pk if run else None, "queue": _query(filters)}, groups=groups, addable=addable
        )
    posted = form.data if isinstance(form.data, QueryDict) else QueryDict()
    rows = [
        {"slug": g.slug, "name": g.name, "tags": [(t, posted.get(f"tag-{t.tag_id}", "")) for t in g.tags]}
        for g in groups
    ]
    # Tags the page's search had added are posted as ids: shown again as the category/slug a person can read.
    paths = {str(tag.pk): f"{tag.category.slug}/{tag.slug}" for tag in addable}
    added = [paths.get(value.strip(), value.strip()) for value in posted.getlist("add") if value.strip()]
    return {
        "recipe": recipe,
        "run": run,
        "groups": rows,
        "added": ", ".join(added),
        "form": form,
        "addable": addable,
        "labels": GoldLabel.objects.filter(recipe=recipe)
        .select_related("tag__category")
        .order_by("tag__category__position", "tag__name", "id"),
        "queue_query": form["queue"].value() or "",
        **extra,
    }


@reviewer_required
@require_http_methods(["GET", "POST"])
def recipe_review_page(request: HttpRequest, recipe_id: int) -> HttpResponse:
    recipe = get_object_or_404(Recipe, pk=recipe_id)
    if request.method == "GET":
        held = None
        try:
            lease = review_lease_take(recipe_id=recipe.pk, reviewer=request.user)
        except LeaseHeld as exc:
            held, lease = exc.message, None
        run = review_run_latest(recipe_id=recipe.pk)
        context = _review_context(request, recipe, run, None, held=held, lease=lease)
        return render(request, "feedback/review_recipe.html", context)

    # The run the page showed: reviewing it is what the reviewer meant, even if a newer one finished since (a
    # run of another recipe is none of this recipe's).
    run = review_run_latest(recipe_id=recipe.pk)
    posted_run = request.POST.get("run", "")
    if posted_run.isdigit() and (run is None or int(posted_run) != run.pk):
        run = recipe.runs.filter(pk=int(posted_run)).first()
    groups = review_suggestions(run=run, recipe_id=recipe.pk)
    form = RecipeReviewForm(request.POST, groups=groups, addable=list(tags_addable()))
    if not form.is_valid():
        context = _review_context(request, recipe, run, form)
        return render(request, "feedback/review_recipe.html", context, status=400)
    try:
        rows = review_page_submit(
            recipe=recipe, run=run, decisions=form.cleaned_data["decisions"], reviewer=request.user
        )
    except DomainError as exc:
        context = _review_context(request, recipe, run, form, error=exc.message)
        return render(request, "feedback/review_recipe.html", context, status=exc.status)
    messages.success(request, f"Saved {len(rows)} decision{'s' if len(rows) != 1 else ''} on “{recipe.title}”.")
    filters, _ = queue_filters_from(form.cleaned_data.get("queue") or "")
    return redirect(_with_query(reverse("review:next"), _query(filters)))


@reviewer_required
@require_POST
def review_bulk_accept_page(request: HttpRequest) -> HttpResponse:
    """Two steps: the counts first (nothing stored), then, confirmed, the reviews."""
    filter_form = ReviewQueueFilterForm(request.POST)
    form = BulkAcceptForm(request.POST)
    if not (filter_form.is_valid() and form.is_valid()):
        context: dict[str, Any] = {"filter_form": filter_form, "form": form, "preview": None}
        return render(request, "feedback/review_bulk.html", context, status=400)
    filters, min_score = filter_form.filters(), form.cleaned_data["min_score"]
    if not form.cleaned_data["confirm"]:
        preview = review_bulk_preview(filters=filters, reviewer=request.user, min_score=min_score)
        context = {
            "filter_form": filter_form,
            "form": form,
            "preview": preview,
            "filters": sorted(filters.as_query().items()),
            "min_score": min_score,
            "query": _query(filters),
        }
        return render(request, "feedback/review_bulk.html", context)
    result = review_bulk_accept(filters=filters, reviewer=request.user, min_score=min_score)
    skipped = f" ({result.skipped} skipped: taken or reviewed meanwhile)" if result.skipped else ""
    messages.success(request, f"Accepted {result.tags} tags on {result.recipes} recipes{skipped}.")
    return redirect(_with_query(reverse("review:queue"), _query(filters)))


@reviewer_required
@require_GET
def review_tag_search(request: HttpRequest) -> JsonResponse:
    """Active tags whose name, slug or synonyms contain `q`: what the review page offers to add."""
    tags = tags_search(query=request.GET.get("q", "")[:100], limit=SEARCH_RESULTS)
    return JsonResponse(
        {
            "tags": [
                {
                    "id": tag.pk,
                    "name": tag.name,
                    "slug": tag.slug,
                    "category": tag.category.slug,
                    "category_name": tag.category.name,
                    "synonyms": tag.synonyms,
                }
                for tag in tags
            ]
        }
    )
