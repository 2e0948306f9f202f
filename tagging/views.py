from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from prompts.selectors import llm_calls_of_run
from tagging.dispatch import recipe_tag_adhoc
from tagging.forms import RecipeTagForm
from tagging.selectors import jobs_recent, run_get, run_tags_by_category, runs_recent
from tagging.services.config import TaggingError
from taxonomy.selectors import categories_list

DEMO_RECIPES = Path(__file__).resolve().parent / "data" / "demo_recipes.json"
TIMING_LABELS = {
    "embed_ms": "Embed",
    "query_ms": "Query",
    "learned_ms": "Learned signals",
    "llm_ms": "LLM",
    "hybrid_ms": "Hybrid",
    "score_ms": "Score",
    "total_ms": "Total",
}


@functools.cache
def _demo_examples() -> list[dict[str, Any]]:
    return [
        {"title": r["title"], "ingredients": r["ingredients"], "instructions": r["instructions"]}
        for r in json.loads(DEMO_RECIPES.read_text())
    ]


@login_required
@require_http_methods(["GET", "POST"])
def dashboard(request: HttpRequest) -> HttpResponse:
    form = RecipeTagForm(
        request.POST if request.method == "POST" else None, categories=categories_list(active_only=True)
    )
    status = 200
    if form.is_bound and form.is_valid():
        try:
            run = recipe_tag_adhoc(
                title=form.cleaned_data["title"],
                ingredients=form.cleaned_data["ingredients"],
                instructions=form.cleaned_data["instructions"],
                config=form.tagging_config(),
                user=request.user,
            )
        except TaggingError as exc:
            form.add_error(None, exc.message)
            status = exc.status
        else:
            return redirect("dashboard:run-detail", run_id=run.pk)
    # Everyone's for staff and reviewers with the view permissions, otherwise the user's own.
    runs = runs_recent(user=request.user, limit=20)
    jobs = jobs_recent(user=request.user, limit=5)
    context = {
        "form": form,
        "runs": runs,
        "jobs": jobs,
        "jobs_running": any(not progress.finished for _, progress in jobs),
        "examples": _demo_examples(),
    }
    return render(request, "tagging/dashboard.html", context, status=status)


@login_required
@require_GET
def run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    run = run_get(run_id=run_id, user=request.user)
    if run is None:
        raise Http404("No such tagging run.")
    groups = run_tags_by_category(run=run)
    timings = [(label, run.timings[key]) for key, label in TIMING_LABELS.items() if key in run.timings]
    context = {
        "run": run,
        "recipe": run.recipe,
        "groups": groups,
        "timings": timings,
        "llm_calls": llm_calls_of_run(run_id=run.pk),
    }
    return render(request, "tagging/run_detail.html", context)
