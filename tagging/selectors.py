from __future__ import annotations

import operator
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from functools import reduce

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import (
    PROTECT,
    BooleanField,
    Count,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
)

from autotagger.embeddings import EmbeddingMode, embedding_model_name
from autotagger.permissions import (
    User,
    can_change_all_recipes,
    can_read_all_jobs,
    can_read_all_recipes,
    can_read_all_runs,
    is_signed_in,
)
from prompts.models import DEFAULT_TAGGING_PROMPT, HYBRID_TAGGING_PROMPT, LLMSource
from prompts.rendering import PromptTemplates
from prompts.selectors import prompt_version_active, prompt_versions_active_ids
from prompts.sources import DEFAULT_SOURCE_NAME
from tagging import staleness
from tagging.learning import MODEL_VERSION
from tagging.models import (
    Recipe,
    RunStatus,
    Strategy,
    TagAssignment,
    TaggerState,
    TaggingJob,
    TaggingRun,
    TagJudgement,
    TrainingExample,
)
from taxonomy.models import Category, Tag, TagEmbedding
from taxonomy.selectors import taxonomy_version_current


@dataclass(frozen=True)
class TagRow:
    id: int
    category_id: int
    slug: str
    name: str
    synonyms: tuple[str, ...]
    embedding: np.ndarray


def tags_embedded(*, model: str) -> list[TagRow]:
    """Every active tag with a vector of `model` (vectors of different models are never mixed), by id. The
    fast mode's vectors live beside the tags (TagEmbedding), the full model's on them."""
    rows: Iterable[tuple[int, int, str, str, list[str], object]]
    if model == embedding_model_name(mode=EmbeddingMode.FAST):
        rows = (
            _tags_embedded_fast(model=model)
            .order_by("tag_id")
            .values_list("tag_id", "tag__category_id", "tag__slug", "tag__name", "tag__synonyms", "embedding")
        )
    else:
        rows = (
            _tags_embedded(model=model)
            .order_by("id")
            .values_list("id", "category_id", "slug", "name", "synonyms", "embedding")
        )
    return [
        TagRow(
            id=tag_id,
            category_id=category_id,
            slug=slug,
            name=name,
            synonyms=tuple(synonyms),
            embedding=np.asarray(embedding, dtype=np.float32),
        )
        for tag_id, category_id, slug, name, synonyms, embedding in rows
    ]


def _tags_embedded(*, model: str) -> QuerySet[Tag]:
    return Tag.objects.filter(active=True, embedding_model=model).exclude(embedding__isnull=True)


def _tags_embedded_fast(*, model: str) -> QuerySet[TagEmbedding]:
    return TagEmbedding.objects.filter(tag__active=True, model=model)


def recipe_embeddings_cached(*, content_hashes: Collection[str], model: str) -> dict[str, np.ndarray]:
    """Vectors already computed by `model` for the same recipe contents (the latest recipe's of each), in one
    query: content hash -> vector, for the contents found."""
    rows = (
        Recipe.objects.filter(content_hash__in=list(content_hashes), embedding_model=model, embedding__isnull=False)
        .order_by("content_hash", "-updated_at", "id")
        .distinct("content_hash")
        .values_list("content_hash", "embedding")
    )
    return {content_hash: np.asarray(vector, dtype=np.float32) for content_hash, vector in rows}


def tagger_state_in_use_id(*, mode: str = EmbeddingMode.FULL) -> int | None:
    """The TaggerState the taggers use now (what tagging.services.tagger_state.learned_model_active loads): the
    active one, fitted for the configured embedding model (or the fast one) by this release's learner; None
    while they are zero-shot."""
    return tagger_states_in_use_ids(modes=[mode])[mode]


def tagger_states_in_use_ids(*, modes: Sequence[str]) -> dict[str, int | None]:
    """`tagger_state_in_use_id` of each mode, in one query."""
    models = {embedding_model_name(mode=mode): mode for mode in modes}
    found: dict[str, int | None] = dict.fromkeys(modes)
    states = (
        TaggerState.objects.filter(active=True, embedding_model__in=list(models))
        .only("id", "fitted_on", "embedding_model")
        .order_by("-id")
    )
    seen: set[str] = set()
    for state in states:
        if state.embedding_model in seen:
            continue
        seen.add(state.embedding_model)
        version = state.fitted_on.get("version")
        if version is not None and int(version) == MODEL_VERSION:
            found[models[state.embedding_model]] = state.pk
    return found


def recipes_visible(*, user: User | None) -> QuerySet[Recipe]:
    """The recipes `user` may read: their own, or all with the recipe view permission (staff, reviewers)."""
    if can_read_all_recipes(user):
        return Recipe.objects.all()
    if not is_signed_in(user):
        return Recipe.objects.none()
    return Recipe.objects.filter(created_by_id=user.pk)  # type: ignore[union-attr]


def recipes_changeable(*, user: User | None) -> QuerySet[Recipe]:
    """The recipes `user` may change and tag: their own, or all with the recipe change permission."""
    if can_change_all_recipes(user):
        return Recipe.objects.all()
    if not is_signed_in(user):
        return Recipe.objects.none()
    return Recipe.objects.filter(created_by_id=user.pk)  # type: ignore[union-attr]


def recipe_get(*, recipe_id: int, user: User | None) -> Recipe | None:
    """The recipe, if `user` may read it (without its embedding)."""
    return recipes_visible(user=user).defer("embedding").filter(pk=recipe_id).first()


def recipes_search(*, user: User | None, query: str, limit: int) -> list[Recipe]:
    """Up to `limit` recipes `user` may read whose title contains `query`, or whose id it is; newest first."""
    recipes = recipes_visible(user=user).defer("embedding")
    matches = Q(title__icontains=query) | (Q(pk=int(query)) if query.isdigit() else Q(pk__in=[]))
    return list(recipes.filter(matches).order_by("-created_at", "-id")[:limit])


def recipe_is_gold_labelled(*, recipe: Recipe) -> bool:
    """Whether records protect the recipe from deletion: the gold labels people gave it.

    Read through the recipe's PROTECT relations rather than the labels' model, which belongs to an app above
    this one."""
    return any(
        relation.related_model._base_manager.filter(**{relation.field.name: recipe}).exists()
        for relation in Recipe._meta.related_objects
        if relation.on_delete is PROTECT
    )


def _with_latest_run(
    recipes: QuerySet[Recipe], *, tag_slug: str | None, category_slug: str | None = None
) -> QuerySet[Recipe]:
    # `latest_run_id` is the API's name for the run of the recipe's current tags (Recipe.current_run): since
    # dry-run re-tags add runs that are not current, "the latest successful run" no longer means that.
    recipes = recipes.annotate(latest_run_id=F("current_run_id")).defer("embedding")
    if tag_slug:
        assignments = TagAssignment.objects.filter(run_id=OuterRef("latest_run_id"), tag__slug=tag_slug)
        if category_slug:
            assignments = assignments.filter(tag__category__slug=category_slug)
        recipes = recipes.filter(Exists(assignments))
    return recipes


def recipes_list(
    *,
    user: User | None,
    tag_slug: str | None = None,
    category_slug: str | None = None,
    stale: bool | None = None,
    stale_causes: Collection[str] | None = None,
) -> QuerySet[Recipe]:
    """Recipes `user` may read, newest first, each with its stale causes (recipe_stale_causes); with `tag_slug`,
    only those whose current tags (current run) include that tag; with `stale` or `stale_causes`, only those
    stale (for one of `stale_causes`, default any), or with `stale=False` only those stale for no cause."""
    recipes = _with_latest_run(recipes_visible(user=user), tag_slug=tag_slug, category_slug=category_slug)
    if stale or stale_causes:
        recipes = recipes_stale(causes=stale_causes or None, recipes=recipes)
    elif stale is False:
        recipes = recipes_fresh(recipes=recipes)
    return recipes_with_stale_causes(recipes).order_by("-created_at", "-id")


def recipe_latest_run(*, recipe: Recipe) -> TaggingRun | None:
    """The run of the recipe's current tags (its current-run pointer), with its assignments."""
    if recipe.current_run_id is None:
        return None
    return runs_with_assignments().filter(pk=recipe.current_run_id, recipe=recipe).first()


def runs_with_assignments() -> QuerySet[TaggingRun]:
    assignments = TagAssignment.objects.select_related("tag__category").order_by(
        "tag__category__position", "tag__category__id", "rank", "id"
    )
    return TaggingRun.objects.select_related("recipe").prefetch_related(Prefetch("assignments", queryset=assignments))


def _runs_visible(runs: QuerySet[TaggingRun], *, user: User | None) -> QuerySet[TaggingRun]:
    """Runs `user` may read: those they started or of their recipes, or all with the run view permission."""
    if can_read_all_runs(user):
        return runs
    if not is_signed_in(user):
        return runs.none()
    return runs.filter(Q(created_by_id=user.pk) | Q(recipe__created_by_id=user.pk))  # type: ignore[union-attr]


def run_get(*, run_id: int, user: User | None) -> TaggingRun | None:
    """The run with its assignments, if `user` may read it."""
    return _runs_visible(runs_with_assignments(), user=user).filter(pk=run_id).first()


def runs_recent(*, user: User | None, limit: int = 20) -> list[TaggingRun]:
    """The latest runs `user` may read, with their recipe and `tag_count`."""
    return list(
        _runs_visible(TaggingRun.objects.all(), user=user)
        .select_related("recipe")
        .defer("recipe__embedding")
        .annotate(tag_count=Count("assignments"))
        .order_by("-created_at", "-id")[:limit]
    )


def run_tags_by_category(*, run: TaggingRun) -> list[dict[str, object]]:
    """The run's tags grouped by category in taxonomy order, each with its judges' verdicts; every category
    the run covered appears, with an empty list when nothing in it was relevant."""
    slugs = run.config.get("category_slugs") or []
    categories = {c.slug: c for c in Category.objects.filter(slug__in=slugs)}
    groups: dict[str, dict[str, object]] = {}
    for slug in slugs:
        if slug in categories:
            groups[slug] = {
                "slug": slug,
                "name": categories[slug].name,
                "position": categories[slug].position,
                "tags": [],
            }
    judgements: dict[int, list[dict[str, str]]] = defaultdict(list)
    for judgement in TagJudgement.objects.filter(assignment__run=run).order_by("-created_at", "-id"):
        judgements[judgement.assignment_id].append(
            {
                "verdict": judgement.verdict,
                "verdict_label": judgement.get_verdict_display(),
                "reason": judgement.reason,
                "prompt_version": judgement.prompt_version,
                "source": judgement.source,
            }
        )
    for assignment in run.assignments.all():
        category = assignment.tag.category
        group = groups.setdefault(
            category.slug, {"slug": category.slug, "name": category.name, "position": category.position, "tags": []}
        )
        group["tags"].append(  # type: ignore[attr-defined]
            {
                "slug": assignment.tag.slug,
                "name": assignment.tag.name,
                "score": assignment.score,
                "rank": assignment.rank,
                "evidence": assignment.evidence,
                # What the LLM judge said of it, newest first (tagging.services.judging).
                "judgements": judgements.get(assignment.pk, []),
            }
        )
    ordered = sorted(groups.values(), key=lambda g: (g["position"], g["slug"]))  # type: ignore[arg-type]
    for group in ordered:
        group.pop("position")
    return ordered


def training_examples_nearest(*, state_id: int, embedding: np.ndarray, limit: int) -> list[tuple[int, float]]:
    """(example id, cosine similarity) of the `limit` labelled recipes of a tagger state nearest to
    `embedding`, best first (approximate: the HNSW index, see `training_examples_nearest_many`)."""
    return training_examples_nearest_many(state_id=state_id, embeddings=embedding[None, :], limit=limit)[0]


def training_examples_nearest_many(
    *, state_id: int, embeddings: np.ndarray, limit: int
) -> list[list[tuple[int, float]]]:
    """`training_examples_nearest` of every row of `embeddings`, in one query (one round trip for a batch).

    Each row walks the HNSW index (`tagging_example_embedding_hnsw`) with `hnsw.ef_search` =
    NEIGHBOURS_EF_SEARCH candidates; an iterative scan keeps walking while the `state_id` filter leaves fewer
    than `limit`, so examples of another state can never starve the answer. `relaxed_order` lets the index
    hand back rows slightly out of order: they are sorted here."""
    if len(embeddings) == 0 or limit <= 0:
        return [[] for _ in range(len(embeddings))]
    table = TrainingExample._meta.db_table
    rows = np.asarray(embeddings, dtype=np.float32)
    # Each value as "%.7g" of it (what pgvector reads back), the row formatted by one operation, not per value.
    template = "[" + ",".join(["%.7g"] * rows.shape[1]) + "]"
    vectors = [template % tuple(row) for row in rows.tolist()]
    ef_search = max(int(settings.NEIGHBOURS_EF_SEARCH), limit)
    results: list[list[tuple[int, float]]] = [[] for _ in vectors]
    with transaction.atomic(), connection.cursor() as cursor:
        # SET LOCAL: these end with the transaction, and never leak to other queries of the connection.
        cursor.execute(
            "SELECT set_config('hnsw.ef_search', %s, true), set_config('hnsw.iterative_scan', 'relaxed_order', true)",
            [str(ef_search)],
        )
        cursor.execute(
            f"""
            SELECT q.position, e.id, e.distance
            FROM unnest(%s::vector[]) WITH ORDINALITY AS q(embedding, position)
            CROSS JOIN LATERAL (
                SELECT t.id, t.embedding <=> q.embedding AS distance
                FROM {table} t
                WHERE t.state_id = %s
                ORDER BY t.embedding <=> q.embedding
                LIMIT %s
            ) e
            """,
            [vectors, state_id, limit],
        )
        for position, example_id, distance in cursor.fetchall():
            results[position - 1].append((example_id, 1.0 - float(distance)))
    for row in results:
        row.sort(key=lambda pair: -pair[1])
    return results


def recipes_for_job(
    *, recipe_ids: Sequence[int] | None, filters: dict[str, object] | None, limit: int, user: User | None
) -> list[Recipe]:
    """The recipes a tagging job of `user` covers, among those they may tag: by id, or by filter
    (`source`, `tag` slug of the latest tagging, `untagged`: never successfully tagged). At most `limit`,
    oldest first."""
    if recipe_ids is not None:
        recipes = recipes_changeable(user=user).filter(pk__in=list(recipe_ids))
    else:
        filters = filters or {}
        recipes = _with_latest_run(
            recipes_changeable(user=user), tag_slug=str(filters["tag"]) if filters.get("tag") else None
        )
        if filters.get("source"):
            recipes = recipes.filter(source=filters["source"])
        if filters.get("untagged"):
            recipes = recipes.filter(latest_run_id__isnull=True)  # type: ignore[misc]  # an annotation
    return list(recipes.defer("embedding").order_by("id")[:limit])


@dataclass(frozen=True)
class JobProgress:
    total: int
    done: int
    failed: int
    pending: int

    @property
    def finished(self) -> bool:
        return self.pending == 0

    @property
    def percent(self) -> int:
        return round(100 * (self.done + self.failed) / self.total) if self.total else 100


def job_progress(*, job: TaggingJob) -> JobProgress:
    counts = dict(job.runs.values_list("status").annotate(n=Count("id")).order_by())
    done, failed = counts.get(RunStatus.SUCCEEDED, 0), counts.get(RunStatus.FAILED, 0)
    return JobProgress(total=job.total, done=done, failed=failed, pending=max(job.total - done - failed, 0))


def jobs_visible(*, user: User | None) -> QuerySet[TaggingJob]:
    """The jobs `user` may read: those they started, or all with the job view permission."""
    if can_read_all_jobs(user):
        return TaggingJob.objects.all()
    if not is_signed_in(user):
        return TaggingJob.objects.none()
    return TaggingJob.objects.filter(created_by_id=user.pk)  # type: ignore[union-attr]


def job_get(*, job_id: int, user: User | None) -> TaggingJob | None:
    return jobs_visible(user=user).filter(pk=job_id).first()


def jobs_recent(*, user: User | None, limit: int = 10) -> list[tuple[TaggingJob, JobProgress]]:
    jobs = jobs_visible(user=user).order_by("-created_at", "-id")[:limit]
    return [(job, job_progress(job=job)) for job in jobs]


# --- Staleness: whether a recipe's current tags were decided by what is current -----------------------


def llm_source_models() -> dict[str, str]:
    """The model each LLM source names now: the rows, and the settings' default source unless a row takes its
    name (as prompts.sources.llm_source_get resolves them)."""
    models = dict(LLMSource.objects.values_list("name", "model"))
    if DEFAULT_SOURCE_NAME not in models and settings.LLM_MODEL:
        models[DEFAULT_SOURCE_NAME] = str(settings.LLM_MODEL)
    return models


def tagging_prompt_name(*, strategy: str) -> str:
    """The prompt `strategy` asks the model with: the hybrid's own (its model only chooses among a shortlist),
    the default tagging prompt for the llm strategy."""
    return HYBRID_TAGGING_PROMPT if strategy == Strategy.HYBRID else DEFAULT_TAGGING_PROMPT


def tagging_prompt_active(*, strategy: str) -> PromptTemplates:
    """The templates `strategy` renders now: the active version of its prompt (`tagging_prompt_name`), or that
    prompt's built-in one while the database has none."""
    return prompt_version_active(name=tagging_prompt_name(strategy=strategy))


def stale_conditions() -> dict[str, Q]:
    """One condition on Recipe per cause (tagging.staleness), against what is current now (a few small queries).

    A run stored before runs recorded their inputs has NULL/blank ones: it counts as stale by taxonomy (the
    version it read is unknown) and by content unless migration 0015 could tell its recipe was not edited since
    (a blank hash is unknown, hence stale). Prompt and LLM model concern the strategies that ask the LLM;
    embedding model and learned state those that score with embeddings (similarity, hybrid): the llm strategy
    uses the state only to pick few-shot examples, which is not worth re-asking the model for.
    """
    run = "current_run__"
    has_run = Q(current_run__isnull=False)
    asks_llm = Q(**{f"{run}strategy__in": [Strategy.LLM, Strategy.HYBRID]})
    embeds = Q(**{f"{run}strategy__in": [Strategy.SIMILARITY, Strategy.HYBRID]})
    nothing = Q(pk__in=[])

    # Each strategy against its own prompt (tagging_prompt_name).
    prompt_moved = nothing
    names = {strategy: tagging_prompt_name(strategy=strategy) for strategy in (Strategy.LLM, Strategy.HYBRID)}
    active = prompt_versions_active_ids(names=names.values())
    for strategy, name in names.items():
        if name in active:
            moved = ~Q(**{f"{run}prompt_version_id": active[name]})
        else:  # the built-in prompt: stale only if the run asked with a stored version
            moved = Q(**{f"{run}prompt_version__isnull": False})
        prompt_moved |= Q(**{f"{run}strategy": strategy}) & moved
    current_models = [
        Q(**{f"{run}llm_source": name, f"{run}llm_model": model}) for name, model in llm_source_models().items()
    ]
    llm_model_moved = ~reduce(operator.or_, current_models, nothing)
    # A fast-mode run was asked for as such: it is stale when its own model or state moves, not for being fast.
    embedding_models = [embedding_model_name(mode=mode) for mode in EmbeddingMode.values]
    embedding_moved = ~Q(**{f"{run}embedding_model__in": embedding_models})
    in_use = tagger_states_in_use_ids(modes=[EmbeddingMode.FULL, EmbeddingMode.FAST])
    state = in_use[EmbeddingMode.FULL]
    states = [s for s in in_use.values() if s is not None]
    # While no state is in use (zero-shot), a run that used one is not counted: retraining is what makes it stale.
    state_moved = ~Q(**{f"{run}tagger_state_id__in": states}) if state is not None else nothing
    version = taxonomy_version_current()

    return {
        staleness.NEVER_TAGGED: Q(current_run__isnull=True),
        staleness.CONTENT: has_run & ~Q(**{f"{run}content_hash": F("content_hash")}),
        staleness.TAXONOMY: has_run
        & (Q(**{f"{run}taxonomy_version__isnull": True}) | Q(**{f"{run}taxonomy_version__lt": version})),
        staleness.PROMPT: has_run & asks_llm & prompt_moved,
        staleness.MODEL: has_run & ((asks_llm & llm_model_moved) | (embeds & embedding_moved)),
        staleness.TAGGER: has_run & embeds & state_moved,
    }


class UnknownStaleCause(ValueError):
    pass


def _causes_checked(causes: Collection[str] | None) -> list[str]:
    if causes is None:
        return list(staleness.STALE_CAUSES)
    unknown = sorted(set(causes) - set(staleness.STALE_CAUSES))
    if unknown:
        raise UnknownStaleCause(f"Unknown staleness causes: {', '.join(unknown)}")
    return [cause for cause in staleness.STALE_CAUSES if cause in causes]


def recipes_stale(
    *, causes: Collection[str] | None = None, recipes: QuerySet[Recipe] | None = None
) -> QuerySet[Recipe]:
    """The recipes (of `recipes`, default all) whose current tags are stale for any of `causes` (default all of
    tagging.staleness.STALE_CAUSES): one SQL filter, a join to the current run."""
    conditions = stale_conditions()
    wanted = [conditions[cause] for cause in _causes_checked(causes)]
    queryset = recipes if recipes is not None else Recipe.objects.all()
    return queryset.filter(reduce(operator.or_, wanted, Q(pk__in=[])))


def recipes_fresh(*, recipes: QuerySet[Recipe] | None = None) -> QuerySet[Recipe]:
    """The recipes whose current tags are stale for no cause."""
    queryset = recipes if recipes is not None else Recipe.objects.all()
    return queryset.exclude(pk__in=recipes_stale().values("pk"))


def recipes_with_stale_causes(recipes: QuerySet[Recipe]) -> QuerySet[Recipe]:
    """`recipes` with a boolean `stale_<cause>` per cause (read with recipe_stale_causes)."""
    return recipes.annotate(
        **{
            f"stale_{cause}": ExpressionWrapper(condition, output_field=BooleanField())
            for cause, condition in stale_conditions().items()
        }
    )


def recipe_stale_causes(recipe: Recipe) -> list[str]:
    """The causes a recipe is stale for, from its annotations (recipes_with_stale_causes) or one query."""
    if not hasattr(recipe, f"stale_{staleness.NEVER_TAGGED}"):
        annotated = recipes_with_stale_causes(Recipe.objects.filter(pk=recipe.pk)).only("pk").first()
        if annotated is None:
            return []
        recipe = annotated
    return [cause for cause in staleness.STALE_CAUSES if getattr(recipe, f"stale_{cause}")]


def staleness_counts(*, recipes: QuerySet[Recipe] | None = None) -> dict[str, int]:
    """How many recipes (of `recipes`, default all) are stale for each cause, stale at all ("stale": each counted
    once), and in all ("recipes"): one aggregate query."""
    conditions = stale_conditions()
    queryset = recipes if recipes is not None else Recipe.objects.all()
    return queryset.aggregate(
        **{cause: Count("pk", filter=condition) for cause, condition in conditions.items()},
        stale=Count("pk", filter=reduce(operator.or_, conditions.values())),
        recipes=Count("pk"),
    )
