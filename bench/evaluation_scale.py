"""Evaluation of a large labelled dataset: an `llm` evaluation job over 100,000 synthetic recipes, its chunks
taken by worker processes the way Celery workers take them (`evaluation_job_step`, what
`feedback.evaluation_job_step` runs), scored at the end from the chunks' partial counts, with memory,
throughput and time printed.

Prints:
- how the dataset was made (in a separate process, so its memory does not count below);
- starting the job (the file checked line by line, none of its recipes kept): seconds and this process's
  peak RSS before and after;
- each worker process's peak RSS after its first chunk and then every `--every` chunks (target: flat after
  the first), its growth from the first chunk to the last, recipes/s and the job's wall-clock time;
- the final step (adding up the chunks' counts, the bootstrap over every recipe): which process did it, its
  seconds and that process's peak RSS after it;
- exactly once: every chunk done on its first claim, one answer per recipe, one model call per recipe.

The model is the oracle server of bench/oracle_server.py (a local OpenAI-compatible server, in a process of
its own) answering the gold cuisine of 7 recipes in 10 and the first offered tag otherwise, so the scores
are neither 0 nor 1. Embeddings: each synthetic recipe's text is given a stored vector in the embedding
cache (a real recipe's embedding mixed with another's and a little noise, recorded under the current
model's name), so the job never encodes it: the figures measure everything but the encoder (asking the
model through the gateway, storing answers, the chunk bookkeeping, the scoring).

Uses its own database (`autotagger_bench_evaluation_scale` on the embedded server) unless DATABASE_URL is
set, and its own task queue.

    .venv/bin/python bench/evaluation_scale.py [--recipes 100000] [--processes 2] [--chunk-size 500] [--every 10]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autotagger.settings.development")
os.environ.setdefault("AUTOTAGGER_EMBEDDED_DATABASE", "autotagger_bench_evaluation_scale")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ["DJANGO_DEBUG"] = "false"
os.environ["CELERY_QUEUE"] = f"autotagger-bench-evaluation-scale-{os.getpid()}"

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connections  # noqa: E402
from shared_rows import shared_rows, with_title_and_ingredients  # noqa: E402

DATASET = ROOT / ".data" / "bench-evaluation-scale.jsonl"
SOURCE = "bench-evaluation-oracle"
ADJECTIVES = ["Quick", "Rustic", "Spicy", "Classic", "Smoky", "Herby", "Creamy", "Zesty", "Hearty", "Light"]
BASE_RECIPES = 500
RIGHT_SHARE = 0.7


def peak_rss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _real_recipes(count: int) -> list[dict[str, Any]]:
    """Real recipes whose cuisine the default taxonomy has."""
    from feedback.jsonl import tag_slug
    from taxonomy.models import Tag

    known = {slug for slug in Tag.objects.filter(category__slug="cuisine").values_list("slug", flat=True)}

    def cuisines(row: dict[str, Any]) -> list[str]:
        return [c for c in row.get("tags", {}).get("cuisine", []) if tag_slug(c) in known]

    rows = [
        {**row, "tags": {"cuisine": cuisines(row)[:1]}}
        for row in shared_rows(keep=lambda row: with_title_and_ingredients(row) and bool(cuisines(row)))
    ]
    random.Random(15).shuffle(rows)
    return rows[:count]


def setup(*, count: int) -> None:
    """Write `count` synthetic labelled recipes to DATASET and store a vector for each (a process of its own)."""
    from autotagger.embeddings import embedding_model_name
    from autotagger.recipe_text import RecipeText
    from feedback.models import EvaluationJob
    from tagging.models import EmbeddingCacheEntry
    from tagging.services.recipes import embeddings_cached

    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    call_command("taxonomy_import", "--default", "--if-empty", "--embed-now", verbosity=0)
    EvaluationJob.objects.all().delete()
    real = _real_recipes(BASE_RECIPES)
    texts = [RecipeText(r["title"], r["ingredients"], str(r.get("instructions") or "")).for_embedding() for r in real]
    base = embeddings_cached(texts=texts)
    rng = np.random.default_rng(15)
    model = embedding_model_name()
    entries: list[Any] = []
    DATASET.parent.mkdir(exist_ok=True)
    with DATASET.open("w") as handle:
        for i in range(count):
            a, b = int(rng.integers(len(real))), int(rng.integers(len(real)))
            recipe = real[a]
            row = {
                "id": f"synthetic-{i}",
                "title": f"{ADJECTIVES[i % len(ADJECTIVES)]} {recipe['title']} no. {i}"[:500],
                "ingredients": [str(x) for x in recipe["ingredients"]] + [str(real[b]["ingredients"][0])],
                "instructions": str(recipe.get("instructions") or "")[:2000],
                "tags": recipe["tags"],
            }
            handle.write(json.dumps(row) + "\n")
            weight = rng.uniform(0.7, 1.0)
            mixed = weight * base[a] + (1 - weight) * base[b] + rng.normal(0, 0.3 / 20, base.shape[1])
            text = RecipeText(row["title"], row["ingredients"], row["instructions"]).for_embedding()
            entries.append(
                EmbeddingCacheEntry(
                    model=model,
                    text_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
                    embedding=(mixed / np.linalg.norm(mixed)).astype(np.float32),
                )
            )
            if len(entries) == 5000:
                EmbeddingCacheEntry.objects.bulk_create(entries, ignore_conflicts=True)
                entries = []
    EmbeddingCacheEntry.objects.bulk_create(entries, ignore_conflicts=True)
    print(
        f"wrote {count} synthetic recipes to {DATASET.name} ({DATASET.stat().st_size / 1e6:.0f} MB, texts "
        f"recombined from {len(real)} real ones) and stored their vectors (model {model}) in "
        f"{time.perf_counter() - started:.1f} s; setup process peak RSS {peak_rss_mb():.0f} MB",
        flush=True,
    )


def serve() -> None:
    """The oracle model, in a process of its own: prints its URL, then answers until killed."""
    from bench.oracle_server import PromptRecipe, TaggingServer, recipe_key
    from feedback.jsonl import tag_slug

    # By title alone (each is numbered, so unique): the prompt may list fewer ingredients than the recipe has.
    gold: dict[str, list[str]] = {}
    with DATASET.open() as handle:
        for line in handle:
            row = json.loads(line)
            gold[recipe_key(row["title"], [])[0]] = [tag_slug(c) for c in row["tags"]["cuisine"]]

    def answer(recipe: PromptRecipe | None, allowed: dict[str, list[str]]) -> dict[str, list[str]]:
        wanted = gold.get(recipe.key()[0], []) if recipe is not None else []
        right = recipe is not None and int(hashlib.sha1(recipe.title.encode()).hexdigest(), 16) % 10 < RIGHT_SHARE * 10
        return {
            slug: [tag for tag in wanted if tag in tags][:1] if right else tags[:1] for slug, tags in allowed.items()
        }

    with TaggingServer(answer=answer, count_tokens=lambda text: len(text) // 4, model="oracle-model") as server:
        print(server.url, flush=True)
        while True:
            time.sleep(3600)


def _worker(number: int, job_id: int, every: int, results: Any) -> None:
    """One worker process: take whichever chunk is free until none is left; report peak RSS as it goes."""
    from feedback.evaluation.jobs import EvaluationJobBusy, evaluation_job_step
    from feedback.models import EvaluationChunk, EvaluationJob

    connections.close_all()  # the parent's connection must not be shared across fork
    series: list[tuple[int, float]] = []
    done, recipes, step = 0, 0, 0
    finished_here: tuple[float, float] | None = None
    while True:
        step += 1
        token = f"bench-{number}-{step}"
        started = time.perf_counter()
        try:
            more = evaluation_job_step(job_id=job_id, token=token)
        except EvaluationJobBusy:
            time.sleep(1.0)  # the last chunks are held by the other processes
            continue
        chunk = EvaluationChunk.objects.filter(job_id=job_id, claimed_by=token).values_list("size", flat=True).first()
        if chunk is not None:
            done, recipes = done + 1, recipes + chunk
            if done == 1 or done % every == 0:
                series.append((done, peak_rss_mb()))
                print(
                    f"  process {number}: {done} chunks ({recipes} recipes), peak RSS {series[-1][1]:.0f} MB",
                    flush=True,
                )
        if not more:
            job = EvaluationJob.objects.defer("dataset_content").get(pk=job_id)
            if job.run_id is not None and job.finished_at is not None and finished_here is None and chunk is not None:
                finished_here = (time.perf_counter() - started, peak_rss_mb())
            break
    series.append((done, peak_rss_mb()))
    connections.close_all()
    results.put((number, done, recipes, series, finished_here))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", type=int, default=100_000, help="synthetic recipes to evaluate")
    parser.add_argument("--processes", type=int, default=2, help="worker processes taking chunks")
    parser.add_argument("--chunk-size", type=int, default=500, help="recipes per chunk (EVALUATION_CHUNK_SIZE)")
    parser.add_argument("--every", type=int, default=10, help="print peak RSS every this many chunks")
    parser.add_argument("--skip-setup", action="store_true", help="evaluate the dataset a previous run wrote")
    parser.add_argument("--setup-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.setup_only:
        setup(count=args.recipes)
        return
    if args.serve:
        serve()
        return
    if not args.skip_setup:
        subprocess.run([sys.executable, __file__, "--setup-only", "--recipes", str(args.recipes)], check=True)

    from django.utils import timezone

    from feedback.evaluation.jobs import evaluation_job_chunks_create, evaluation_job_start
    from feedback.models import EvaluationChunk, EvaluationItem, EvaluationJob
    from prompts.models import LLMCall, LLMSource

    server = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        LLMSource.objects.update_or_create(
            name=SOURCE,
            defaults={"base_url": url, "model": "oracle-model", "timeout_seconds": 30, "probed_at": timezone.now()},
        )
        print(
            f"model: {settings.EMBEDDING_MODEL}  cpus: {os.cpu_count()}  processes: {args.processes}  "
            f"answers asked at once per process: {settings.EVALUATION_LLM_CONCURRENCY}"
        )
        before = peak_rss_mb()
        started = time.perf_counter()
        job = evaluation_job_start(
            content=DATASET.read_bytes(), name=DATASET.stem, strategy="llm", source=SOURCE, k=1, categories=["cuisine"]
        )
        chunks = evaluation_job_chunks_create(job_id=job.pk, size=args.chunk_size)
        print(
            f"job started: {job.total} recipes in {chunks} chunks of {args.chunk_size} in "
            f"{time.perf_counter() - started:.1f} s; peak RSS {before:.0f} MB before, {peak_rss_mb():.0f} MB after"
        )
        calls_before = LLMCall.objects.count()

        connections.close_all()
        context = multiprocessing.get_context("fork")
        results = context.Queue()
        started = time.perf_counter()
        processes = [
            context.Process(target=_worker, args=(number, job.pk, args.every, results))
            for number in range(1, args.processes + 1)
        ]
        for process in processes:
            process.start()
        reports = [results.get() for _ in processes]
        for process in processes:
            process.join()
        seconds = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=10)

    job = EvaluationJob.objects.defer("dataset_content").select_related("run").get(pk=job.pk)
    for number, done, recipes, series, finished_here in sorted(reports):
        points = " ".join(f"{n}:{mb:.0f}" for n, mb in series)
        growth = series[-1][1] - series[0][1] if series else 0.0
        print(f"process {number}: {done} chunks, {recipes} recipes; peak RSS MB after chunk n (n:MB): {points}")
        print(f"process {number}: peak RSS growth after its first chunk: {growth:+.0f} MB")
        if finished_here is not None:
            print(
                f"process {number} did the final step (its last chunk, then the chunks' counts added up and the "
                f"bootstrap over every recipe): {finished_here[0]:.1f} s, peak RSS after it {finished_here[1]:.0f} MB"
            )
    answered = EvaluationItem.objects.filter(job=job).count()
    print(
        f"evaluated: {answered} of {job.total} recipes in {seconds:.1f} s: {answered / seconds:.1f} recipes/s "
        f"({job.status}{': ' + job.error if job.error else ''})"
    )
    chunks_once = EvaluationChunk.objects.filter(job=job, status="done", attempts=1).count()
    positions = EvaluationItem.objects.filter(job=job).values("position").distinct().count()
    calls = LLMCall.objects.count() - calls_before
    print(
        f"exactly once: {chunks_once} of {chunks} chunks done on their first claim, {positions} distinct answers "
        f"for {job.total} recipes, {calls} model calls"
    )
    if job.run is not None:
        metrics = job.run.metrics
        cuisine = metrics["categories"]["cuisine"]
        print(
            f"scores: cuisine P {cuisine['precision']:.3f} R {cuisine['recall']:.3f} F1 {cuisine['f1']:.3f} "
            f"(support {cuisine['support']}); latency p50 {metrics['latency_ms']['p50']:.1f} ms "
            f"p95 {metrics['latency_ms']['p95']:.1f} ms; confidence pairs {metrics['llm']['confidence']['pairs']}"
        )


if __name__ == "__main__":
    main()
