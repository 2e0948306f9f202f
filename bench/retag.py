"""Re-tagging throughput, memory and the dry-run diff report, measured in one run so the figures compare.

Prints:
- the raw encode rate of the embedding model on the benchmark recipes' texts (the ceiling, recipes/s);
- a `similarity` re-tagging job over every benchmark recipe (applying: the recipes have no stored vector yet,
  so each is encoded, as after a change of content or model), its chunks executed in this process one after
  the other as a worker takes them: recipes/s and the ratio to the raw rate (target >= 0.8), and the peak
  resident memory after each chunk (target: flat after the first chunk);
- a second job, a dry run with another k (the vectors are stored by then, as for a taxonomy change): its rate,
  and the time to produce its diff report (per-tag totals, biggest movers, the first page of changed recipes).

The recipes are recombined from the shared datasets (../shared/datasets: titles, ingredients and instructions
of different recipes mixed, so every text is distinct), or generated from the demo recipes without them.

Uses its own database (`autotagger_bench_retag` on the embedded server) unless DATABASE_URL is set, and its own
task queue (messages the job sends are dropped: this process executes the chunks).

    .venv/bin/python bench/retag.py [--recipes 10000] [--chunk-size 200]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autotagger.settings.development")
os.environ.setdefault("AUTOTAGGER_EMBEDDED_DATABASE", "autotagger_bench_retag")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ["DJANGO_DEBUG"] = "false"
# The job's chunk messages go to a queue of their own, which no `make run` worker consumes.
os.environ["CELERY_QUEUE"] = f"autotagger-bench-retag-{os.getpid()}"

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from shared_rows import DATASETS, demo_rows, shared_rows  # noqa: E402

SOURCE = "bench-retag"
ADJECTIVES = ["Quick", "Rustic", "Spicy", "Classic", "Smoky", "Herby", "Creamy", "Zesty", "Hearty", "Light"]
EXTRAS = ["a pinch of chilli flakes", "fresh parsley", "a squeeze of lemon", "toasted seeds", "grated cheese"]


def benchmark_recipes(count: int, *, seed: int = 14) -> tuple[list[dict[str, Any]], str]:
    """`count` distinct recipes: a recipe's title and instructions with its ingredients plus one or two of
    another's (real texts, recombined), or variants of the demo recipes when the datasets are missing."""
    rng = random.Random(seed)
    base = shared_rows()
    origin = f"recombined from {DATASETS}"
    if not base:
        base = demo_rows()
        origin = "generated from the demo recipes (no shared datasets)"
    recipes = []
    for i in range(count):
        recipe = base[i % len(base)]
        other = base[rng.randrange(len(base))]
        extra = rng.sample(other["ingredients"], k=min(2, len(other["ingredients"]))) or [EXTRAS[i % len(EXTRAS)]]
        recipes.append(
            {
                "title": f"{ADJECTIVES[i % len(ADJECTIVES)]} {recipe['title']} no. {i}"[:500],
                "ingredients": [*recipe["ingredients"], *extra],
                "instructions": str(recipe.get("instructions") or "")[:4000],
            }
        )
    return recipes, origin


def peak_rss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """Resident memory now (the peak never falls, so it cannot show whether a chunk gives memory back)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return peak_rss_mb()


def run_job(*, selection: dict[str, Any], config: dict[str, Any], dry_run: bool) -> tuple[Any, float, list[float]]:
    """Create a job and execute its chunks here, in order; the job, its seconds, peak RSS after each chunk."""
    from django.conf import settings

    from autotagger.embeddings import embeddings_cache_clear
    from autotagger.redis import redis_client
    from retagging.dispatch import retag_job_create
    from retagging.models import RetagChunk, RetagJob
    from retagging.services.chunks import retag_chunk_execute

    def no_runs(run_ids: Any) -> int:
        raise AssertionError("a similarity job queues no tagging runs")

    def no_collect(chunk_id: int, countdown: int) -> None:
        raise AssertionError("a similarity job collects nothing later")

    embeddings_cache_clear()
    started = time.perf_counter()
    job = retag_job_create(selection=selection, strategy="similarity", config=config, dry_run=dry_run)
    redis_client().delete(settings.CELERY_TASK_DEFAULT_QUEUE)
    series: list[float] = []
    current: list[float] = []
    for chunk_id in RetagChunk.objects.filter(job=job).order_by("number").values_list("id", flat=True):
        retag_chunk_execute(
            chunk_id=chunk_id, delivery=f"bench-{chunk_id}", send_runs=no_runs, schedule_collect=no_collect
        )
        series.append(peak_rss_mb())
        current.append(current_rss_mb())
    seconds = time.perf_counter() - started
    print(
        f"{'dry run' if dry_run else 're-tag job'}: resident memory after each chunk (MB): "
        + " ".join(f"{mb:.0f}" for mb in current)
    )
    return RetagJob.objects.get(pk=job.pk), seconds, series


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", type=int, default=10_000, help="recipes to store and re-tag")
    parser.add_argument("--chunk-size", type=int, default=None, help="recipes per chunk (RETAG_CHUNK_SIZE)")
    args = parser.parse_args()

    from django.conf import settings

    from autotagger.embeddings import _get_backend, embeddings_cache_clear, embeddings_create
    from autotagger.recipe_text import RecipeText
    from retagging.models import RetagJob
    from retagging.selectors import retag_job_progress
    from tagging.models import EmbeddingCacheEntry, Recipe, TaggingRun
    from tagging.services.recipes import recipe_build

    if args.chunk_size:
        settings.RETAG_CHUNK_SIZE = args.chunk_size
    call_command("migrate", verbosity=0)
    call_command("taxonomy_import", "--default", "--if-empty", "--embed-now", verbosity=0)
    RetagJob.objects.all().delete()
    TaggingRun.objects.filter(recipe__source=SOURCE).delete()
    Recipe.objects.filter(source=SOURCE).delete()
    EmbeddingCacheEntry.objects.all().delete()

    backend = _get_backend()
    data, origin = benchmark_recipes(args.recipes)
    print(f"model: {backend.model_name}  dimensions: {settings.EMBEDDING_DIMENSIONS}  cpus: {os.cpu_count()}")
    print(f"recipes: {len(data)} {origin}; chunk size {settings.RETAG_CHUNK_SIZE}")
    texts = [RecipeText(r["title"], r["ingredients"], r["instructions"]).for_embedding() for r in data]
    embeddings_create(texts=texts[:16])  # warm-up: first calls allocate

    # (a) The ceiling: the model alone on the same texts.
    embeddings_cache_clear()
    # In chunk-sized calls, as the job encodes: one call over every text would set a peak of memory that no
    # chunk reaches, and hide the chunks' own growth.
    started = time.perf_counter()
    for start in range(0, len(texts), settings.RETAG_CHUNK_SIZE):
        embeddings_create(texts=texts[start : start + settings.RETAG_CHUNK_SIZE])
    raw_seconds = time.perf_counter() - started
    raw_rate = len(texts) / raw_seconds
    embeddings_cache_clear()

    Recipe.objects.bulk_create(
        [
            recipe_build(
                title=r["title"],
                ingredients=r["ingredients"],
                instructions=r["instructions"],
                external_id=None,
                source=SOURCE,
                created_by=None,
            )
            for r in data
        ],
        batch_size=1000,
    )
    selection = {"kind": "source", "value": SOURCE}

    # (b), (c) Every recipe encoded and re-tagged; the pointers move as the job goes.
    job, seconds, series = run_job(selection=selection, config={"k": 3}, dry_run=False)
    progress = retag_job_progress(job=job)
    rate = progress.done / seconds

    # (d) A dry run with another k on stored vectors, then its diff report.
    dry, dry_seconds, dry_series = run_job(selection=selection, config={"k": 2}, dry_run=True)
    dry_progress = retag_job_progress(job=dry)
    report_seconds, report = diff_report_time(dry)

    print(f"raw encode rate:          {raw_rate:8.1f} recipes/s  ({len(texts)} recipes in {raw_seconds:.1f} s)")
    print(
        f"re-tag job (encoding):    {rate:8.1f} recipes/s  ({progress.done} done, {progress.failed} failed, "
        f"{progress.changed} changed, in {seconds:.1f} s; {job.status})"
    )
    print(f"re-tag / raw:             {rate / raw_rate:8.2f}     (target >= 0.80)")
    print("peak RSS after each chunk (MB): " + " ".join(f"{mb:.0f}" for mb in series))
    growth = series[-1] - series[0] if series else 0.0
    print(f"peak RSS growth after the first chunk: {growth:+.0f} MB over {len(series) - 1} chunks")
    print(
        f"dry run (stored vectors): {dry_progress.done / dry_seconds:8.1f} recipes/s  ({dry_progress.done} done, "
        f"{dry_progress.changed} changed, in {dry_seconds:.1f} s); peak RSS {dry_series[-1]:.0f} MB"
    )
    print(f"dry-run diff report:      {report_seconds * 1000:8.1f} ms  ({report})")


def diff_report_time(job: Any) -> tuple[float, str]:
    """Seconds to read the dry run's diff report as its page does, and what it held."""
    from retagging.selectors import retag_job_changed_items, retag_job_tag_totals

    started = time.perf_counter()
    totals = retag_job_tag_totals(job=job)
    movers = sorted(totals, key=lambda total: abs(total.net), reverse=True)[:10]
    first_page = list(retag_job_changed_items(job=job)[:50])
    seconds = time.perf_counter() - started
    return seconds, f"{len(totals)} tags moved, top mover {movers[0].tag if movers else '-'}, {len(first_page)} rows"


if __name__ == "__main__":
    main()
