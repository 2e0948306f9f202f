"""Bulk tagging of a large catalogue: a `similarity` re-tagging job over 100,000 synthetic recipes, its chunks
taken by worker processes the way Celery workers take them, with memory, throughput and time printed.

Prints:
- how the recipes were made and stored (in a separate process, so its memory does not count below);
- creating the job: seconds, and the peak resident memory of this process before and after (the items are
  written by the database from the selection's query, never held here);
- executing the job's chunks in `--processes` processes, each claiming whichever chunk is free
  (`retag_chunk_execute`, what `retagging.chunk_execute` runs on a worker): each process's peak RSS after
  its first chunk and then every `--every` chunks (target: flat after the first), the growth from the first
  chunk to the last, recipes/s and the job's wall-clock time;
- every recipe re-tagged exactly once (one new run each, every chunk done once).

Embeddings: encoding 100,000 recipes with the full model takes about 2 hours on this machine, so by default
each synthetic recipe is given a stored vector: a real recipe's embedding (../shared/datasets, encoded once
with the configured model and cached in the benchmark database), mixed with another's and a little noise,
normalised, and recorded under the current model's name so the job never encodes it. The figures therefore
measure everything but the encoder: scoring, storing runs and assignments, the diff, the chunk bookkeeping.
`--encode` leaves the vectors out so the job encodes every recipe with the configured backend.

Uses its own database (`autotagger_bench_bulk_scale` on the embedded server) unless DATABASE_URL is set, and
its own task queue (the chunk messages the job sends are dropped: the processes here execute the chunks).

    .venv/bin/python bench/bulk_scale.py [--recipes 100000] [--processes 2] [--chunk-size 200] [--encode]
"""

from __future__ import annotations

import argparse
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
os.environ.setdefault("AUTOTAGGER_EMBEDDED_DATABASE", "autotagger_bench_bulk_scale")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ["DJANGO_DEBUG"] = "false"
# The job's chunk messages go to a queue of their own, which no `make run` worker consumes.
os.environ["CELERY_QUEUE"] = f"autotagger-bench-bulk-scale-{os.getpid()}"

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, connections  # noqa: E402
from django.utils import timezone  # noqa: E402
from shared_rows import demo_rows, shared_rows  # noqa: E402

SOURCE = "bench-bulk-scale"
ADJECTIVES = ["Quick", "Rustic", "Spicy", "Classic", "Smoky", "Herby", "Creamy", "Zesty", "Hearty", "Light"]
BASE_RECIPES = 500


def peak_rss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _real_recipes(count: int) -> list[dict[str, Any]]:
    rows = shared_rows() or demo_rows()
    random.Random(15).shuffle(rows)
    return rows[:count]


def setup(*, count: int, encode: bool) -> None:
    """Store `count` synthetic recipes (run in a process of its own: its memory is not the job's)."""
    from pgvector.psycopg import register_vector

    from autotagger.embeddings import embedding_model_name
    from autotagger.recipe_text import RecipeText
    from retagging.models import RetagJob
    from tagging.models import Recipe, TaggingRun
    from tagging.services.recipes import embeddings_cached, recipe_content_hash

    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    call_command("taxonomy_import", "--default", "--if-empty", "--embed-now", verbosity=0)
    RetagJob.objects.all().delete()
    TaggingRun.objects.filter(recipe__source=SOURCE).delete()
    Recipe.objects.filter(source=SOURCE).delete()
    real = _real_recipes(BASE_RECIPES)
    texts = [RecipeText(r["title"], r["ingredients"], str(r.get("instructions") or "")).for_embedding() for r in real]
    base = embeddings_cached(texts=texts)
    rng = np.random.default_rng(15)
    model = embedding_model_name()
    index = next(i for i in Recipe._meta.indexes if i.name == "tagging_recipe_embedding_hnsw")
    with connection.schema_editor() as editor:
        editor.remove_index(Recipe, index)
    connection.ensure_connection()
    register_vector(connection.connection)
    columns = (
        "title, ingredients, instructions, source, content_hash, embedding, embedding_model, created_at, updated_at"
    )
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {Recipe._meta.db_table} ({columns}) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(
                ["varchar", "text[]", "text", "varchar", "varchar", "vector", "varchar", "timestamptz", "timestamptz"]
            )
            now = timezone.now()
            for i in range(count):
                a, b = int(rng.integers(len(real))), int(rng.integers(len(real)))
                recipe = real[a]
                title = f"{ADJECTIVES[i % len(ADJECTIVES)]} {recipe['title']} no. {i}"[:500]
                ingredients = [str(x) for x in recipe["ingredients"]] + [str(real[b]["ingredients"][0])]
                instructions = str(recipe.get("instructions") or "")[:4000]
                vector = None
                if not encode:
                    weight = rng.uniform(0.7, 1.0)
                    mixed = weight * base[a] + (1 - weight) * base[b] + rng.normal(0, 0.3 / 20, base.shape[1])
                    vector = (mixed / np.linalg.norm(mixed)).astype(np.float32)
                content_hash = recipe_content_hash(title=title, ingredients=ingredients, instructions=instructions)
                stored_model = model if vector is not None else ""
                copy.write_row((title, ingredients, instructions, SOURCE, content_hash, vector, stored_model, now, now))
        cursor.execute("SET maintenance_work_mem = '1GB'")
        cursor.execute("SET max_parallel_maintenance_workers = 0")
    with connection.schema_editor() as editor:
        editor.add_index(Recipe, index)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Recipe._meta.db_table}")
    vectors = "encoded by the job" if encode else f"stored vectors (perturbed real embeddings, model {model})"
    print(
        f"stored {count} synthetic recipes (texts recombined from {len(real)} real ones; {vectors}) "
        f"in {time.perf_counter() - started:.1f} s; setup process peak RSS {peak_rss_mb():.0f} MB",
        flush=True,
    )


def _worker(number: int, chunk_ids: list[int], every: int, results: Any) -> None:
    """One worker process: take every chunk still free, in order; report peak RSS as it goes."""
    from retagging.services.chunks import retag_chunk_execute

    connections.close_all()  # the parent's connection must not be shared across fork

    def no_runs(run_ids: Any) -> int:
        raise AssertionError("a similarity job queues no tagging runs")

    def no_collect(chunk_id: int, countdown: int) -> None:
        raise AssertionError("a similarity job collects nothing later")

    series: list[tuple[int, float]] = []
    done = 0
    for chunk_id in chunk_ids:
        outcome = retag_chunk_execute(
            chunk_id=chunk_id, delivery=f"bench-{number}-{chunk_id}", send_runs=no_runs, schedule_collect=no_collect
        )
        if outcome is None:
            continue  # another process holds it or finished it
        done += 1
        if done == 1 or done % every == 0:
            series.append((done, peak_rss_mb()))
            # As it goes, so that a run stopped early still shows what it measured.
            print(f"  process {number}: {done} chunks, peak RSS {series[-1][1]:.0f} MB", flush=True)
    series.append((done, peak_rss_mb()))
    connections.close_all()
    results.put((number, done, series))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", type=int, default=100_000, help="synthetic recipes to store and re-tag")
    parser.add_argument("--processes", type=int, default=2, help="worker processes taking chunks")
    parser.add_argument("--chunk-size", type=int, default=None, help="recipes per chunk (RETAG_CHUNK_SIZE)")
    parser.add_argument("--every", type=int, default=25, help="print peak RSS every this many chunks")
    parser.add_argument("--encode", action="store_true", help="no stored vectors: the job encodes every recipe")
    parser.add_argument("--skip-setup", action="store_true", help="re-tag the recipes a previous run stored")
    parser.add_argument("--setup-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.setup_only:
        setup(count=args.recipes, encode=args.encode)
        return
    if not args.skip_setup:
        command = [sys.executable, __file__, "--setup-only", "--recipes", str(args.recipes)]
        subprocess.run([*command, *(["--encode"] if args.encode else [])], check=True)

    from retagging.dispatch import retag_job_create
    from retagging.models import RetagChunk, RetagItem, RetagJob
    from retagging.selectors import retag_job_progress
    from tagging.models import TaggingRun

    if args.chunk_size:
        settings.RETAG_CHUNK_SIZE = args.chunk_size
    print(f"model: {settings.EMBEDDING_MODEL}  cpus: {os.cpu_count()}  processes: {args.processes}")
    before = peak_rss_mb()
    started = time.perf_counter()
    job = retag_job_create(
        selection={"kind": "source", "value": SOURCE}, strategy="similarity", config={"k": 3}, dry_run=False
    )
    created = time.perf_counter() - started
    from autotagger.redis import redis_client

    redis_client().delete(settings.CELERY_TASK_DEFAULT_QUEUE)
    chunk_ids = list(RetagChunk.objects.filter(job=job).order_by("number").values_list("id", flat=True))
    print(
        f"job created: {job.total} recipes in {len(chunk_ids)} chunks of {settings.RETAG_CHUNK_SIZE} in "
        f"{created:.1f} s; peak RSS {before:.0f} MB before, {peak_rss_mb():.0f} MB after"
    )

    connections.close_all()
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    started = time.perf_counter()
    processes = [
        context.Process(target=_worker, args=(number, chunk_ids, args.every, results))
        for number in range(1, args.processes + 1)
    ]
    for process in processes:
        process.start()
    reports = [results.get() for _ in processes]
    for process in processes:
        process.join()
    seconds = time.perf_counter() - started

    job = RetagJob.objects.get(pk=job.pk)
    progress = retag_job_progress(job=job)
    for number, done, series in sorted(reports):
        points = " ".join(f"{n}:{mb:.0f}" for n, mb in series)
        growth = series[-1][1] - series[0][1] if series else 0.0
        print(f"process {number}: {done} chunks; peak RSS MB after chunk n (n:MB): {points}")
        print(f"process {number}: peak RSS growth after its first chunk: {growth:+.0f} MB")
    print(
        f"re-tagged: {progress.done} done, {progress.failed} failed, {progress.changed} changed of {job.total} in "
        f"{seconds:.1f} s: {progress.done / seconds:.1f} recipes/s ({job.status})"
    )
    runs = TaggingRun.objects.filter(recipe__source=SOURCE, created_at__gte=job.created_at).count()
    chunks_done = RetagChunk.objects.filter(job=job, status="done", attempts=1).count()
    doubled = RetagItem.objects.filter(job=job).values("recipe_id").distinct().count()
    print(
        f"exactly once: {runs} runs for {job.total} recipes, {doubled} distinct items, "
        f"{chunks_done} of {len(chunk_ids)} chunks done on their first claim"
    )


if __name__ == "__main__":
    main()
