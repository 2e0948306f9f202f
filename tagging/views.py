from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from autotagger.errors import DomainError
from autotagger.permissions import (
    can_activate_prompt_versions,
    can_ask_judge,
    can_change_gold_labelled_recipes,
    can_save_prompt_versions,
    can_try_prompts,
)
from autotagger.queue import BrokerUnavailable
from prompts.models import PromptVersion
from prompts.selectors import (
    llm_calls_of_run,
    prompt_version_active,
    prompt_version_active_row,
    prompt_versions_for_tagging,
)
from prompts.services import prompt_draft_save
from prompts.sources import LLMError, llm_source_get, llm_sources_available
from tagging.dashboard import dashboard_panels
from tagging.dispatch import recipe_tag_adhoc, run_judge_request
from tagging.forms import PromptPlaygroundForm, RecipeTagForm
from tagging.selectors import jobs_recent, recipes_search, run_get, run_tags_by_category, runs_recent
from tagging.services.config import TaggingError
from tagging.services.playground import prompt_playground_run
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
        "may_review": can_change_gold_labelled_recipes(request.user),
        "panels": dashboard_panels(request=request),
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
        "can_judge": can_ask_judge(request.user),
        "judge_sources": llm_sources_available() if can_ask_judge(request.user) else [],
        "default_source": str(settings.LLM_DEFAULT_SOURCE),
        "may_review": can_change_gold_labelled_recipes(request.user),
    }
    return render(request, "tagging/run_detail.html", context)


@login_required
@require_POST
def run_judge(request: HttpRequest, run_id: int) -> HttpResponse:
    """Queue the LLM judge about the run's tags, with the source chosen on the run page."""
    run = run_get(run_id=run_id, user=request.user)
    if run is None:
        raise Http404("No such tagging run.")
    if not can_ask_judge(request.user):
        raise PermissionDenied("Asking the LLM judge needs the permission to add tag judgements.")
    try:
        source = run_judge_request(run=run, source=request.POST.get("source") or None)
    except (DomainError, BrokerUnavailable) as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, f"The LLM judge ({source}) is asked about this run's tags; reload to see its verdicts."
        )
    return redirect("dashboard:run-detail", run_id=run.pk)


def _playground_initial(request: HttpRequest, start: PromptVersion | None) -> dict[str, Any]:
    initial: dict[str, Any] = {"version": start, "source": str(settings.LLM_DEFAULT_SOURCE)}
    templates = prompt_version_active() if start is None else start
    initial["system_template"] = templates.system_template
    initial["user_template"] = templates.user_template
    if request.GET.get("recipe", "").isdigit():
        initial["recipe"] = int(request.GET["recipe"])
    return initial


@login_required
@require_http_methods(["GET", "POST"])
def prompt_playground(request: HttpRequest) -> HttpResponse:
    """Try a draft of the tagging prompt against the active version on one recipe, side by side, and save it as
    a new version (and activate it). Nothing it runs stores tags."""
    if not can_try_prompts(request.user):
        raise PermissionDenied("The prompt playground is for staff who may see prompt versions.")
    versions = prompt_versions_for_tagging()
    start = None
    if request.GET.get("version", "").isdigit():
        start = versions.filter(pk=int(request.GET["version"])).first()
    start = start or prompt_version_active_row()
    sources = llm_sources_available()
    form = PromptPlaygroundForm(
        request.POST if request.method == "POST" else None,
        initial=_playground_initial(request, start),
        versions=versions,
        sources=sources,
        categories=categories_list(active_only=True),
        user=request.user,
    )
    action = request.POST.get("action", "run")
    comparison = None
    status = 200
    if form.is_bound and action in ("save", "activate"):
        allowed = can_activate_prompt_versions if action == "activate" else can_save_prompt_versions
        if not allowed(request.user):
            raise PermissionDenied(
                "Saving a prompt version needs the permission to add (and to activate, change) them."
            )
        if form.is_valid():
            parent = form.cleaned_data["version"]
            if parent is None:
                form.add_error("version", "Choose the version the draft started from: the new version is its child.")
            else:
                try:
                    version = prompt_draft_save(
                        parent=parent,
                        system_template=form.cleaned_data["system_template"],
                        user_template=form.cleaned_data["user_template"],
                        notes=form.cleaned_data["notes"],
                        author=request.user,  # type: ignore[arg-type]
                        activate=action == "activate",
                    )
                except DomainError as exc:
                    form.add_error(None, exc.message)
                else:
                    done = "saved and activated" if version.is_active else "saved"
                    messages.success(request, f"{version.label} {done}.")
                    return redirect(f"{reverse('dashboard:prompt-playground')}?version={version.pk}")
    elif form.is_bound and form.is_valid():
        recipe = form.recipe_text()
        if recipe is not None:
            parent = form.cleaned_data["version"]
            try:
                comparison = prompt_playground_run(
                    draft_system=form.cleaned_data["system_template"],
                    draft_user=form.cleaned_data["user_template"],
                    draft_label=f"draft from {parent.label}" if parent else "draft",
                    active=prompt_version_active(),
                    recipe=recipe,
                    source=llm_source_get(name=form.cleaned_data["source"]),
                    categories=tuple(form.cleaned_data["categories"]) or None,
                    k=form.cleaned_data["k"],
                )
            except (DomainError, LLMError) as exc:
                form.add_error(None, exc.message)
    if form.is_bound and form.errors:
        status = 400
    query = request.GET.get("q", "").strip()
    context = {
        "form": form,
        "comparison": comparison,
        "start": start,
        "versions": versions,
        "query": query,
        "found": recipes_search(user=request.user, query=query, limit=10) if query else [],
        "can_save": can_save_prompt_versions(request.user),
        "can_activate": can_activate_prompt_versions(request.user),
    }
    return render(request, "tagging/prompt_playground.html", context, status=status)
