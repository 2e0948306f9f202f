"""Evaluating the strategies that ask a model (llm, hybrid) on a labelled dataset: a job cut into chunks of
recipes that any running worker takes (each under a lease: a chunk whose worker died is taken over), each
recipe's answer kept, so it resumes where it stopped and asks nothing twice (an answer to the same
question, by cache key, is reused). A finished chunk stores its partial counts; the last one adds them up
into an EvaluationRun with the same scores as any other evaluation plus what the model cost, without
holding the dataset's answers in memory."""

from __future__ import annotations

import io
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import close_old_connections, connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from autotagger.errors import DomainError
from feedback.evaluation import metrics, runner
from feedback.evaluation.baselines import Baseline
from feedback.evaluation.confidence import confidence_calibration_fit_counts, stated_histogram, stated_merge
from feedback.evaluation.datasets import (
    Dataset,
    DatasetRecipe,
    dataset_line_spans,
    dataset_recipes_at,
    dataset_scan,
)
from feedback.evaluation.errors import EvaluationError
from feedback.evaluation.provenance import code_version
from feedback.models import (
    EvaluationChunk,
    EvaluationChunkStatus,
    EvaluationItem,
    EvaluationJob,
    EvaluationJobStatus,
    EvaluationRun,
)
from feedback.selectors import (
    evaluation_chunk_lines,
    evaluation_job_failures,
    evaluation_job_latencies,
    gold_labels_fingerprint,
)
from feedback.training import labelled_data
from prompts.gateway import llm_call_budget_seconds
from prompts.rendering import PromptTemplates
from prompts.sources import LLMError, LLMSourceConfig
from tagging.models import Strategy
from tagging.selectors import tagging_prompt_active
from tagging.services.config import (
    TaggingConfig,
    TaggingError,
    category_requests,
    llm_source_resolve,
    user_or_none,
)
from tagging.services.llm_runs import llm_cache_key, text_predict_with_llm
from tagging.services.recipes import embeddings_cached, recipe_content_hash
from tagging.taggers.base import CategoryRequest
from taxonomy.limits import MAX_TAGS_PER_CATEGORY

logger = logging.getLogger(__name__)

LLM_STRATEGIES = (Strategy.LLM, Strategy.HYBRID)
# Errors kept in the report, to show what went wrong without repeating it for every recipe.
FAILURE_EXAMPLES = 5

Progress = Callable[[int, int], None]  # (recipes done, total)


class EvaluationJobBusy(DomainError):
    """Every chunk the job has left is held by another live worker (until its lease runs out)."""

    code = "evaluation_job_busy"
    status = 409


@dataclass(frozen=True)
class JobProgress:
    done: int
    failed: int
    total: int

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.total) if self.total else 100


def _lease() -> timedelta:
    # A chunk's lease is renewed after every recipe: a live worker never holds a recipe longer than one model
    # call's budget, so a lease that ran out means its worker is gone.
    return timedelta(seconds=llm_call_budget_seconds() + 60)


def evaluation_job_start(
    *,
    content: bytes,
    name: str,
    strategy: str,
    source: str | None,
    k: int,
    categories: list[str] | None,
    user: AbstractBaseUser | AnonymousUser | None = None,
    prompt: PromptTemplates | None = None,
    compared_with: EvaluationJob | None = None,
) -> EvaluationJob:
    """Check the request and store a queued job (the caller enqueues it, or runs it with
    `evaluation_job_run_here`), asking with `prompt` (None: the active version of the strategy's prompt now,
    kept for the whole job).
    Raises EvaluationError naming what is wrong (nothing is stored), DatasetError for a file that is no
    labelled dataset."""
    if strategy not in LLM_STRATEGIES:
        raise EvaluationError(
            f"An evaluation job runs the strategies that ask a model ({', '.join(LLM_STRATEGIES)}), not {strategy!r}."
        )
    if not 1 <= k <= MAX_TAGS_PER_CATEGORY:
        raise EvaluationError(f"k must be between 1 and {MAX_TAGS_PER_CATEGORY}, not {k}.")
    # Checked line by line without keeping the recipes or a list of the lines: a 100,000-recipe file costs the
    # memory of one recipe beside the file itself.
    dataset = dataset_scan(name=name, lines=io.BytesIO(content))
    if not dataset.recipes:
        raise EvaluationError(f"The dataset {name} holds no recipes.")
    if not dataset.vocabulary:
        raise EvaluationError(f"The dataset {name} has no tags to score against.")
    wanted = list(dataset.vocabulary)
    if categories is not None:
        wanted = list(dict.fromkeys(c.strip() for c in categories if c.strip()))
        unknown = [c for c in wanted if c not in dataset.vocabulary]
        if unknown or not wanted:
            raise EvaluationError(
                f"The dataset {name} has no tags in {', '.join(unknown) or 'no category'}; "
                f"its categories are {', '.join(dataset.vocabulary)}."
            )
    try:
        slugs, _ = runner.database_categories(test=dataset.as_dataset(), categories=wanted)
        config = TaggingConfig(strategy=strategy, k=k, categories=tuple(slugs), source=source)
        resolved = llm_source_resolve(config=config)
        category_requests(config=config)
    except ValueError as exc:
        raise EvaluationError(
            f"None of the categories of {name} ({', '.join(wanted)}) is an active category of the taxonomy."
        ) from exc
    except TaggingError as exc:
        raise EvaluationError(exc.message, details=exc.details) from exc
    prompt = prompt or tagging_prompt_active(strategy=strategy)
    with transaction.atomic():
        job = EvaluationJob.objects.create(
            prompt_label=prompt.label,
            prompt_version_id=prompt.version_id,
            system_template=prompt.system_template,
            user_template=prompt.user_template,
            compared_with=compared_with,
            dataset=dataset.name,
            dataset_sha256=dataset.sha256,
            strategy=strategy,
            source=resolved.name,
            k=k,
            categories=slugs,
            total=dataset.recipes,
            created_by=user_or_none(user=user),
        )
        _dataset_content_store(job_id=job.pk, content=content)
    return job


def _dataset_content(*, job_id: int) -> bytes:
    """The stored dataset, fetched in binary: Django's text result would come as hex, twice the file, then
    decoded (a 154 MB file took 590 MB more memory)."""
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(
            f"SELECT dataset_content FROM {EvaluationJob._meta.db_table} WHERE id = %s", [job_id], binary=True
        )
        row = cursor.fetchone()
    if row is None:
        raise EvaluationError(f"Evaluation job {job_id} does not exist.")
    return bytes(row[0])


def _dataset_content_store(*, job_id: int, content: bytes) -> None:
    """Store the dataset as a binary parameter bound by the server. Django binds parameters on the client,
    writing a bytea into the query text in hex: a 154 MB file of 100,000 recipes took the starting process
    from 127 MB to 1.6 GB of memory."""
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(
            f"UPDATE {EvaluationJob._meta.db_table} SET dataset_content = %b WHERE id = %s",
            [content, job_id],
        )


def evaluation_job_start_from_file(
    *,
    path: Path,
    strategy: str,
    source: str | None,
    k: int,
    categories: list[str] | None,
    user: AbstractBaseUser | AnonymousUser | None = None,
) -> EvaluationJob:
    if not path.is_file():
        raise EvaluationError(f"The evaluation dataset {path} does not exist.")
    return evaluation_job_start(
        content=path.read_bytes(),
        name=path.stem,
        strategy=strategy,
        source=source,
        k=k,
        categories=categories,
        user=user,
    )


def evaluation_job_progress(*, job: EvaluationJob) -> JobProgress:
    items = EvaluationItem.objects.filter(job=job)
    return JobProgress(done=items.count(), failed=items.filter(ok=False).count(), total=job.total)


def evaluation_jobs_recent(*, limit: int) -> list[EvaluationJob]:
    """The latest jobs, newest first, each with `done` and `failed` counted in the same query."""
    return list(
        EvaluationJob.objects.defer("dataset_content")
        .annotate(done=Count("items"), failed=Count("items", filter=Q(items__ok=False)))
        .order_by("-created_at", "-id")[:limit]
    )


def job_prompt(*, job: EvaluationJob) -> PromptTemplates:
    """The templates the job asks with: those it recorded when it started (the active version for a job from
    before prompts were recorded)."""
    if not job.system_template:
        return tagging_prompt_active(strategy=job.strategy)
    return PromptTemplates(
        label=job.prompt_label,
        system_template=job.system_template,
        user_template=job.user_template,
        version_id=job.prompt_version_id,
    )


@dataclass
class _Answer:
    position: int
    recipe: DatasetRecipe
    cache_key: str
    predicted: dict[str, list[tuple[str, float]]]
    stats: dict[str, Any]
    latency_ms: float
    error: str = ""


def _ask(
    recipe: DatasetRecipe,
    embedding: np.ndarray,
    config: TaggingConfig,
    requests: Sequence[CategoryRequest],
    source: LLMSourceConfig,
    prompt: PromptTemplates,
) -> tuple[dict[str, list[tuple[str, float]]], dict[str, Any], float, str]:
    started = time.perf_counter()
    try:
        predicted, stats = text_predict_with_llm(
            text=recipe.text, embedding=embedding, config=config, requests=requests, source=source, prompt=prompt
        )
        return predicted, stats, (time.perf_counter() - started) * 1000, ""
    except LLMError as exc:
        return {}, {}, (time.perf_counter() - started) * 1000, exc.message


def _ask_in_thread(*args: Any) -> tuple[dict[str, list[tuple[str, float]]], dict[str, Any], float, str]:
    # A pool thread has its own database connection: closed here, or it outlives the job.
    try:
        return _ask(*args)
    finally:
        connection.close()


def evaluation_job_chunks_create(*, job_id: int, size: int | None = None) -> int:
    """Cut the job into chunks of `size` recipes (default EVALUATION_CHUNK_SIZE), once: the first step does
    it (the job's row lock makes concurrent first steps wait and find them made). Returns how many it made."""
    if EvaluationChunk.objects.filter(job_id=job_id).exists():
        return 0
    with transaction.atomic():
        job = EvaluationJob.objects.select_for_update().defer("dataset_content").get(pk=job_id)
        if EvaluationChunk.objects.filter(job=job).exists():
            return 0
        # The only time the whole file is read after the start: to find where each chunk's lines lie.
        spans = dataset_line_spans(
            content=_dataset_content(job_id=job_id), size=size or int(settings.EVALUATION_CHUNK_SIZE)
        )
        EvaluationChunk.objects.bulk_create(
            [
                EvaluationChunk(job=job, number=number, first=first, size=size, byte_start=start, byte_end=end)
                for number, (first, size, start, end) in enumerate(spans, start=1)
            ],
            batch_size=1000,
        )
        return len(spans)


def _chunk_claim(*, job_id: int, token: str) -> EvaluationChunk | None:
    """Take the first chunk no live worker holds: pending, held by this very delivery (a re-delivered
    message takes its chunk back at once), or held by one whose lease ran out (its worker died)."""
    now = timezone.now()
    with transaction.atomic():
        chunk = (
            EvaluationChunk.objects.select_for_update(skip_locked=True)
            .filter(job_id=job_id)
            .filter(
                Q(status=EvaluationChunkStatus.PENDING)
                | Q(status=EvaluationChunkStatus.RUNNING, claimed_by=token)
                | Q(status=EvaluationChunkStatus.RUNNING, lease_until__lt=now)
            )
            .defer("partial", "recipe_counts")
            .order_by("number")
            .first()
        )
        if chunk is None:
            return None
        chunk.status, chunk.claimed_by, chunk.lease_until = EvaluationChunkStatus.RUNNING, token, now + _lease()
        chunk.attempts += 1
        chunk.started_at = chunk.started_at or now
        chunk.save(update_fields=["status", "claimed_by", "lease_until", "attempts", "started_at"])
        EvaluationJob.objects.filter(pk=job_id, status=EvaluationJobStatus.QUEUED).update(
            status=EvaluationJobStatus.RUNNING
        )
        EvaluationJob.objects.filter(pk=job_id, started_at__isnull=True).update(started_at=now)
    return chunk


def _chunk_renew(*, chunk: EvaluationChunk) -> None:
    EvaluationChunk.objects.filter(pk=chunk.pk, claimed_by=chunk.claimed_by).update(
        lease_until=timezone.now() + _lease()
    )


def _store(job: EvaluationJob, chunk: EvaluationChunk, answer: _Answer, *, cached: bool) -> None:
    EvaluationItem.objects.bulk_create(
        [
            EvaluationItem(
                job=job,
                position=answer.position,
                recipe_id=answer.recipe.id,
                cache_key=answer.cache_key,
                ok=not answer.error,
                predicted={slug: [[tag, score] for tag, score in tags] for slug, tags in answer.predicted.items()},
                stats=answer.stats,
                latency_ms=answer.latency_ms,
                cached=cached,
                error=answer.error,
            )
        ],
        # A worker that took the chunk over may have stored it meanwhile: the first answer stays.
        ignore_conflicts=True,
    )
    _chunk_renew(chunk=chunk)


def evaluation_job_step(*, job_id: int, progress: Progress | None = None, token: str | None = None) -> bool:
    """Take a chunk of the job no live worker holds (any worker may: `token` names this delivery), answer
    its recipes (EVALUATION_LLM_CONCURRENCY at a time, never more than the source allows) and store its
    partial counts; the step that finds every chunk done scores the job. True while chunks remain undone.
    Raises EvaluationJobBusy when every chunk left is held by another live worker."""
    job = EvaluationJob.objects.defer("dataset_content").get(pk=job_id)
    if job.status in (EvaluationJobStatus.SUCCEEDED, EvaluationJobStatus.FAILED):
        return False
    try:
        evaluation_job_chunks_create(job_id=job_id)
        chunk = _chunk_claim(job_id=job_id, token=token or uuid.uuid4().hex)
        if chunk is None:
            held = EvaluationChunk.objects.filter(job_id=job_id).exclude(status=EvaluationChunkStatus.DONE)
            lease = held.order_by("lease_until").values_list("lease_until", flat=True).first()
            if lease is not None:
                raise EvaluationJobBusy(
                    f"Every chunk left of evaluation job {job_id} is being worked on (the first lease ends at "
                    f"{lease:%H:%M:%S})",
                    details={"job": job_id},
                )
        elif chunk.attempts > int(settings.EVALUATION_CHUNK_MAX_ATTEMPTS):
            _chunk_give_up(job, chunk, progress)
        else:
            _chunk_work(job, chunk, progress)
        if EvaluationChunk.objects.filter(job_id=job_id).exclude(status=EvaluationChunkStatus.DONE).exists():
            return True
        _finish(job_id)
        return False
    except EvaluationJobBusy:
        raise
    except Exception as exc:
        message = exc.message if isinstance(exc, DomainError) else f"Unexpected error: {exc}"
        if not isinstance(exc, DomainError):
            logger.exception("Evaluation job %s failed", job_id)
        EvaluationJob.objects.filter(pk=job_id).update(
            status=EvaluationJobStatus.FAILED, error=message, finished_at=timezone.now(), lease_until=None
        )
        raise


def _chunk_recipes(job: EvaluationJob, chunk: EvaluationChunk) -> list[DatasetRecipe]:
    # Only the chunk's lines are read: a step costs its chunk, whatever the size of the dataset.
    lines = evaluation_chunk_lines(chunk=chunk)
    recipes = [recipe for _, recipe in sorted(dataset_recipes_at(lines=lines, positions=range(chunk.size)).items())]
    if len(recipes) != chunk.size:
        raise EvaluationError(f"Chunk {chunk.number} of evaluation job {job.pk} lost its recipes.")
    return recipes


def _chunk_give_up(job: EvaluationJob, chunk: EvaluationChunk, progress: Progress | None) -> None:
    """A chunk delivered more than EVALUATION_CHUNK_MAX_ATTEMPTS times: its workers were lost each time, so
    something in it kills them. Its unanswered recipes become failures naming why (nothing is asked again)
    and it is scored as it stands, so the job ends instead of killing worker after worker."""
    positions = range(chunk.first, chunk.first + chunk.size)
    recipes = _chunk_recipes(job, chunk)
    answered = set(EvaluationItem.objects.filter(job=job, position__in=positions).values_list("position", flat=True))
    error = (
        f"Chunk {chunk.number} was delivered {chunk.attempts - 1} times without finishing (its worker was lost "
        "each time); its unanswered recipes are not asked again."
    )
    for position, recipe in zip(positions, recipes, strict=True):
        if position not in answered:
            _store(job, chunk, _Answer(position, recipe, "", {}, {}, 0.0, error), cached=False)
    logger.warning("Evaluation job %s: chunk %s given up after %s deliveries", job.pk, chunk.number, chunk.attempts - 1)
    embeddings = embeddings_cached(texts=[r.text.for_embedding() for r in recipes])
    _chunk_finish(job, chunk, recipes, embeddings, progress)


def _chunk_finish(
    job: EvaluationJob,
    chunk: EvaluationChunk,
    recipes: list[DatasetRecipe],
    embeddings: np.ndarray,
    progress: Progress | None,
) -> None:
    positions = list(range(chunk.first, chunk.first + chunk.size))
    items = list(EvaluationItem.objects.filter(job=job, position__in=positions).order_by("position"))
    partial, counts = _chunk_partial(job, chunk, recipes, embeddings, items)
    finished = EvaluationChunk.objects.filter(
        pk=chunk.pk, claimed_by=chunk.claimed_by, status=EvaluationChunkStatus.RUNNING
    ).update(
        status=EvaluationChunkStatus.DONE,
        partial=partial,
        recipe_counts=counts,
        finished_at=timezone.now(),
        lease_until=None,
    )
    if not finished:
        logger.info(
            "Chunk %s of evaluation job %s was taken over; its counts were left to the other", chunk.number, job.pk
        )
    if progress is not None:
        progress(EvaluationItem.objects.filter(job=job).count(), job.total)


def _chunk_work(job: EvaluationJob, chunk: EvaluationChunk, progress: Progress | None) -> None:
    positions = list(range(chunk.first, chunk.first + chunk.size))
    recipes = _chunk_recipes(job, chunk)
    config = TaggingConfig(strategy=job.strategy, k=job.k, categories=tuple(job.categories), source=job.source)
    try:
        requests = category_requests(config=config)
        source = llm_source_resolve(config=config)
    except TaggingError as exc:
        raise EvaluationError(f"The evaluation can no longer run: {exc.message}") from exc
    prompt = job_prompt(job=job)
    embeddings = embeddings_cached(texts=[r.text.for_embedding() for r in recipes])
    answered = set(EvaluationItem.objects.filter(job=job, position__in=positions).values_list("position", flat=True))
    pending = [i for i, position in enumerate(positions) if position not in answered]
    keys = {
        i: llm_cache_key(
            content_hash=recipe_content_hash(
                title=recipes[i].text.title,
                ingredients=recipes[i].text.ingredients,
                instructions=recipes[i].text.instructions,
            ),
            config=config,
            requests=requests,
            source=source,
            prompt=prompt,
        )
        for i in pending
    }
    earlier = {
        item.cache_key: item
        for item in EvaluationItem.objects.filter(cache_key__in=list(keys.values()), ok=True).order_by("id")
    }
    to_ask = []
    for i in pending:
        if keys[i] in earlier:
            hit = earlier[keys[i]]
            predicted = {slug: [(t, s) for t, s in tags] for slug, tags in hit.predicted.items()}
            _store(job, chunk, _Answer(positions[i], recipes[i], keys[i], predicted, hit.stats, 0.0), cached=True)
        else:
            to_ask.append((positions[i], recipes[i], embeddings[i], keys[i]))
    done = EvaluationItem.objects.filter(job=job).count()
    _ask_all(job, chunk, to_ask, config, requests, source, prompt, progress, already=done)
    _chunk_finish(job, chunk, recipes, embeddings, progress)


def _ask_all(
    job: EvaluationJob,
    chunk: EvaluationChunk,
    to_ask: list[tuple[int, DatasetRecipe, np.ndarray, str]],
    config: TaggingConfig,
    requests: Sequence[CategoryRequest],
    source: LLMSourceConfig,
    prompt: PromptTemplates,
    progress: Progress | None,
    *,
    already: int,
) -> None:
    workers = max(1, min(int(settings.EVALUATION_LLM_CONCURRENCY), source.max_concurrency, len(to_ask)))
    answered = already
    if workers == 1:
        for position, recipe, embedding, key in to_ask:
            predicted, stats, latency, error = _ask(recipe, embedding, config, requests, source, prompt)
            _store(job, chunk, _Answer(position, recipe, key, predicted, stats, latency, error), cached=False)
            answered += 1
            if progress is not None:
                progress(answered, job.total)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="evaluation") as pool:
        futures = {
            pool.submit(_ask_in_thread, recipe, embedding, config, requests, source, prompt): (position, recipe, key)
            for position, recipe, embedding, key in to_ask
        }
        for future in as_completed(futures):
            position, recipe, key = futures[future]
            predicted, stats, latency, error = future.result()
            _store(job, chunk, _Answer(position, recipe, key, predicted, stats, latency, error), cached=False)
            answered += 1
            if progress is not None:
                progress(answered, job.total)
    close_old_connections()


def evaluation_job_run_here(*, job_id: int, progress: Progress | None = None) -> EvaluationJob:
    """Do the whole job in this process, chunk after chunk (what the workers do, for a command line or a
    benchmark without a worker)."""
    while evaluation_job_step(job_id=job_id, progress=progress):
        pass
    return EvaluationJob.objects.select_related("run").get(pk=job_id)


# The baselines a worker fitted for a job, kept while the gold labels they learned from are unchanged: a
# job's chunks are scored against the same baselines without refitting them for every chunk.
_baselines_fitted: dict[tuple[int, tuple[int, int | None]], list[Baseline] | None] = {}


def _baselines(job: EvaluationJob, slugs: list[str]) -> list[Baseline] | None:
    key = (job.pk, gold_labels_fingerprint())
    if key not in _baselines_fitted:
        _baselines_fitted.clear()
        _baselines_fitted[key] = runner.baselines_fit(labelled=labelled_data(), slugs=slugs, k=job.k)
    return _baselines_fitted[key]


def _chunk_partial(
    job: EvaluationJob,
    chunk: EvaluationChunk,
    recipes: Sequence[DatasetRecipe],
    embeddings: np.ndarray,
    items: Sequence[EvaluationItem],
) -> tuple[dict[str, Any], bytes]:
    """The chunk's additive counts (the metrics', the model's usage, the stated confidences', hybrid's
    shortlist) and its per-recipe counts for the bootstrap."""
    slugs, tags_by_name = runner.database_categories(
        test=Dataset(name=job.dataset, sha256=job.dataset_sha256, recipes=[]), categories=job.categories
    )
    by_position = {item.position: item for item in items}
    ordered = [by_position.get(position) for position in range(chunk.first, chunk.first + chunk.size)]
    gold = [runner.database_labels(recipe, tags_by_name) for recipe in recipes]
    returned = [
        {slug: [(t, float(s)) for t, s in tags] for slug, tags in item.predicted.items()} if item else {}
        for item in ordered
    ]
    scores = runner.returned_score(
        recipes=recipes,
        gold=gold,
        k=job.k,
        slugs=slugs,
        tags_by_name=tags_by_name,
        embeddings=embeddings,
        returned=returned,
        baselines=_baselines(job, slugs),
    )
    answered = [item for item in items if item.ok]
    partial: dict[str, Any] = {
        "scores": scores.as_json(),
        "llm": _usage(answered),
        "stated": stated_histogram(
            stated=[item.stats.get("stated_confidence", {}) if item and item.ok else {} for item in ordered],
            gold=gold,
        ),
    }
    if job.strategy == Strategy.HYBRID:
        taxonomy = {slug: set(tags_by_name.get(slug, {}).values()) for slug in slugs}
        partial["hybrid"] = _hybrid_counts(items=ordered, gold=gold, slugs=slugs, taxonomy=taxonomy, k=job.k)
    return partial, scores.counts_bytes()


USAGE_STATS = {
    "prompt": "input_tokens",
    "completion": "output_tokens",
    "cached": "cached_tokens",
    "llm_calls": "llm_calls",
    "unknown_dropped": "unknown_dropped",
    "over_k_dropped": "over_k_dropped",
    "shortlisted": "shortlisted",
    "decided_by_similarity": "decided_by_similarity",
    "decided_by_llm": "decided_by_llm",
}


def _usage(answered: Sequence[EvaluationItem]) -> dict[str, float]:
    """Sums over the answered recipes of what the model's answers cost and did."""
    sums: dict[str, float] = {
        key: sum(int(item.stats.get(stat, 0) or 0) for item in answered) for key, stat in USAGE_STATS.items()
    }
    sums["cost"] = sum(float(item.stats.get("cost", 0.0) or 0.0) for item in answered)
    sums["answered"] = len(answered)
    sums["called"] = sum(1 for item in answered if not item.cached)
    return sums


def _finish(job_id: int) -> None:
    """Add up the chunks' partial counts into the job's EvaluationRun, once: the job's row lock makes a
    concurrent last step wait, then find the job scored."""
    with transaction.atomic():
        job = EvaluationJob.objects.select_for_update().defer("dataset_content").get(pk=job_id)
        if job.status not in (EvaluationJobStatus.QUEUED, EvaluationJobStatus.RUNNING) or job.run_id is not None:
            return
        chunks = EvaluationChunk.objects.filter(job=job).order_by("number")
        scores: runner.ChunkScores | None = None
        usage: dict[str, float] = {}
        stated: dict[str, list[float]] = {}
        hybrid: dict[str, Any] | None = None
        # A chunk's partial counts at a time: what is held is the sum, never the dataset's answers.
        for partial in chunks.values_list("partial", flat=True).iterator(chunk_size=200):
            part = runner.ChunkScores.from_json(partial["scores"])
            scores = part if scores is None else scores.merge(part)
            for key, value in partial["llm"].items():
                usage[key] = usage.get(key, 0) + value
            stated_merge(stated, partial["stated"])
            if "hybrid" in partial:
                hybrid = _hybrid_merge(hybrid, partial["hybrid"])
        assert scores is not None
        merged = scores
        slugs = merged.categories

        def counts() -> Iterator[np.ndarray]:
            for predictors, raw in chunks.values_list("partial__scores__predictors", "recipe_counts").iterator(
                chunk_size=200
            ):
                block = np.frombuffer(bytes(raw), dtype=np.int16).reshape(-1, len(predictors), len(slugs), 3)
                yield block[:, [predictors.index(name) for name in merged.predictors]]

        result = runner.result_from_scores(
            dataset=job.dataset,
            dataset_sha256=job.dataset_sha256,
            strategy=job.strategy,
            k=job.k,
            scores=merged,
            counts=counts(),
            latency_ms=evaluation_job_latencies(job_id=job.pk),
            config={"folds": None, "train": "database", "categories": slugs},
            pairs_population="returned",
            floors=runner.precision_floors(slugs),
        )
        result.extra["llm"] = _llm_report(job=job, usage=usage)
        # Fitted on the confidences as stated: a calibration already in use does not feed back into the next.
        result.extra["llm"]["confidence"] = confidence_calibration_fit_counts(counts=stated)
        if hybrid is not None:
            result.extra["hybrid"] = _hybrid_report(hybrid, slugs=slugs, usage=usage)
        run = EvaluationRun.objects.create(
            dataset=result.dataset,
            dataset_sha256=result.dataset_sha256,
            strategy=job.strategy,
            config={
                "k": job.k,
                "folds": None,
                "train": "database",
                "categories": result.categories,
                "source": job.source,
                "job": job.pk,
            },
            prompt_version=job_prompt(job=job).label,
            code_version=code_version(),
            metrics=result.as_json(),
            recipes=result.recipes,
            overall_f1=result.report.overall_f1,
            duration_seconds=(timezone.now() - (job.started_at or job.created_at)).total_seconds(),
            created_by=job.created_by,
        )
        EvaluationJob.objects.filter(pk=job.pk).update(
            status=EvaluationJobStatus.SUCCEEDED, run=run, finished_at=timezone.now(), lease_until=None
        )


def _llm_report(*, job: EvaluationJob, usage: dict[str, float]) -> dict[str, Any]:
    """Tokens, cost and latency per recipe, cache hits and failures of an evaluation job's answers. An
    answer reused from an earlier job counts what it cost then: the figures describe the strategy, not this
    job's bill (which `cache_hits` tells apart)."""
    answered = int(usage.get("answered", 0))
    totals = {key: int(usage.get(key, 0)) for key in ("prompt", "completion", "cached")}
    cost = float(usage.get("cost", 0.0))
    count = answered or 1
    failures, examples = evaluation_job_failures(job_id=job.pk, limit=FAILURE_EXAMPLES)
    latency = evaluation_job_latencies(job_id=job.pk)
    return {
        "source": job.source,
        "recipes": answered + failures,
        "answered": answered,
        "cache_hits": answered - int(usage.get("called", 0)),
        "failures": failures,
        "failure_examples": examples,
        "tokens": totals,
        "tokens_per_recipe": {key: round(value / count, 1) for key, value in totals.items()},
        "cost": round(cost, 6),
        "cost_per_recipe": round(cost / count, 6),
        "calls_per_recipe": round(int(usage.get("llm_calls", 0)) / count, 3),
        "latency_ms": {key: round(value, 2) for key, value in latency.items()},
        "unknown_dropped": int(usage.get("unknown_dropped", 0)),
        "over_k_dropped": int(usage.get("over_k_dropped", 0)),
    }


def _hybrid_counts(
    *,
    items: Sequence[EvaluationItem | None],
    gold: Sequence[dict[str, set[str]]],
    slugs: Sequence[str],
    taxonomy: dict[str, set[str]],
    k: int,
) -> dict[str, Any]:
    """A chunk's part of the hybrid report: per category the gold tags the taxonomy has and those similarity
    accepted or offered the model, and the similarity tagger's own tags scored."""
    reached = dict.fromkeys(slugs, 0)
    reachable = dict.fromkeys(slugs, 0)
    alone: list[dict[str, set[str]]] = []
    for item, labels in zip(items, gold, strict=True):
        stats = item.stats if item is not None and item.ok else {}
        accepted, shortlist = stats.get("accepted", {}), stats.get("shortlist", {})
        for slug in slugs:
            wanted = labels.get(slug, set()) & taxonomy.get(slug, set())
            seen = set(accepted.get(slug, ())) | set(shortlist.get(slug, ()))
            reachable[slug] += len(wanted)
            reached[slug] += len(wanted & seen)
        alone.append({slug: set(tags) for slug, tags in stats.get("similarity_alone", {}).items()})
    tally = metrics.ScoreTally().add(gold=gold, predicted=alone, categories=slugs, k=k, taxonomy=taxonomy)
    return {"reached": reached, "reachable": reachable, "alone": tally.as_json()}


def _hybrid_merge(total: dict[str, Any] | None, part: dict[str, Any]) -> dict[str, Any]:
    if total is None:
        return {"reached": dict(part["reached"]), "reachable": dict(part["reachable"]), "alone": part["alone"]}
    for key in ("reached", "reachable"):
        for slug, value in part[key].items():
            total[key][slug] = total[key].get(slug, 0) + value
    alone = metrics.ScoreTally.from_json(total["alone"]).merge(metrics.ScoreTally.from_json(part["alone"]))
    total["alone"] = alone.as_json()
    return total


def _hybrid_report(counts: dict[str, Any], *, slugs: Sequence[str], usage: dict[str, float]) -> dict[str, Any]:
    """The shortlist's recall (of the gold tags the taxonomy has, the share similarity accepted or offered
    the model) per category and overall, and what the similarity tagger would have returned alone, scored
    the same way. Gold tags outside the taxonomy can reach no strategy and are left out of the recall."""
    reached, reachable = counts["reached"], counts["reachable"]
    report = metrics.ScoreTally.from_json(counts["alone"]).report(list(slugs))
    return {
        "shortlist_recall": round(sum(reached.values()) / sum(reachable.values()), 4)
        if any(reachable.values())
        else None,
        "shortlist_recall_by_category": {
            slug: round(reached[slug] / reachable[slug], 4) if reachable[slug] else None for slug in slugs
        },
        "gold_tags_in_taxonomy": sum(reachable.values()),
        "shortlisted_per_recipe": round(int(usage.get("shortlisted", 0)) / (int(usage.get("answered", 0)) or 1), 2),
        "decided_by_similarity": int(usage.get("decided_by_similarity", 0)),
        "decided_by_llm": int(usage.get("decided_by_llm", 0)),
        "similarity_alone": {
            "overall": {
                "precision": round(report.overall_precision, 4),
                "recall": round(report.overall_recall, 4),
                "f1": round(report.overall_f1, 4),
            },
            "categories": {
                slug: {
                    key: value
                    for key, value in report.categories[slug].as_dict().items()
                    if key in ("precision", "recall", "f1")
                }
                for slug in slugs
            },
        },
    }
