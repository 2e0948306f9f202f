"""The learned tagger's nearest-labelled-recipes search over a large tagger state, measured in one run.

Prints:
- how the 100,000 labelled examples were made and stored (COPY, then the HNSW index built once);
- the query plan of one lookup (it must walk `tagging_example_embedding_hnsw` with the `state_id` filter);
- per `hnsw.ef_search` value: p50/p95 latency of one recipe's lookup (`training_examples_nearest`, the
  per-recipe path; target p95 <= 20 ms) and its recall@25 against exact search over the same vectors;
- a batch of recipes looked up in one query (`training_examples_nearest_many`, what PgvectorNeighbours
  does for a batch) against one query per recipe.

The examples are realistic vectors, not uniform noise: real recipes of the shared datasets
(../shared/datasets) are embedded with the configured model (cached in the benchmark database, so a second
run does not encode again), and each example is a mix of two of them plus a little noise, normalised. The
queries are other real recipes of the datasets, never among the ones the examples were made from.

Uses its own database (`autotagger_bench_neighbours` on the embedded server) unless DATABASE_URL is set.

    .venv/bin/python bench/neighbours.py [--examples 100000] [--queries 300] [--ef-search 40,100,200] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autotagger.settings.development")
os.environ.setdefault("AUTOTAGGER_EMBEDDED_DATABASE", "autotagger_bench_neighbours")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ["DJANGO_DEBUG"] = "false"

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from shared_rows import demo_rows, shared_rows  # noqa: E402

NEIGHBOURS = 25  # tagging.learning.NEIGHBOURS: what the tagger asks for


def real_texts(count: int, *, seed: int = 15) -> list[str]:
    """`count` distinct recipe texts of the shared datasets, shuffled (demo recipes when they are missing)."""
    from autotagger.recipe_text import RecipeText

    rows = shared_rows(keep=lambda row: True) or demo_rows()
    texts = list(
        dict.fromkeys(
            RecipeText(r["title"], r.get("ingredients") or [], str(r.get("instructions") or "")).for_embedding()
            for r in rows
            if r.get("title")
        )
    )
    random.Random(seed).shuffle(texts)
    return texts[:count]


def synthetic_examples(base: np.ndarray, count: int, *, seed: int = 15) -> np.ndarray:
    """`count` unit vectors, each mostly one real recipe, partly another, plus noise: clustered like a
    catalogue of variations on real dishes."""
    rng = np.random.default_rng(seed)
    first = base[rng.integers(0, len(base), count)]
    second = base[rng.integers(0, len(base), count)]
    weight = rng.uniform(0.6, 1.0, size=(count, 1)).astype(np.float32)
    noise = rng.normal(0.0, 0.35 / np.sqrt(base.shape[1]), size=(count, base.shape[1])).astype(np.float32)
    vectors = weight * first + (1 - weight) * second + noise
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32)


def store_examples(vectors: np.ndarray) -> tuple[int, float, float]:
    """A tagger state holding `vectors` as its TrainingExamples (COPY in binary, then the HNSW index built
    once, as the migration defines it); the state's id, seconds to copy, seconds to index."""
    from pgvector.psycopg import register_vector

    from tagging.models import TaggerState, TrainingExample

    TaggerState.objects.all().delete()
    state = TaggerState.objects.create(
        active=True, embedding_model=settings.EMBEDDING_MODEL, fitted_on={}, parameters={}, artifacts=b""
    )
    index = next(i for i in TrainingExample._meta.indexes if i.name == "tagging_example_embedding_hnsw")
    table = TrainingExample._meta.db_table
    with connection.schema_editor() as editor:
        editor.remove_index(TrainingExample, index)
    started = time.perf_counter()
    connection.ensure_connection()
    register_vector(connection.connection)
    sql = f"COPY {table} (state_id, row, embedding) FROM STDIN WITH (FORMAT BINARY)"
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        copy.set_types(["bigint", "integer", "vector"])
        for row, vector in enumerate(vectors):
            copy.write_row((state.pk, row, vector))
    copied = time.perf_counter() - started
    started = time.perf_counter()
    with connection.cursor() as cursor:
        # The graph of 100,000 vectors of 384 floats fits in this; with less the build is much slower.
        cursor.execute("SET maintenance_work_mem = '1GB'")
        cursor.execute("SET max_parallel_maintenance_workers = 0")
    with connection.schema_editor() as editor:
        editor.add_index(TrainingExample, index)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {table}")
    return state.pk, copied, time.perf_counter() - started


def exact_nearest(examples: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    sims = queries @ examples.T
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    return top


def query_plan(state_id: int, query: np.ndarray) -> str:
    from tagging.selectors import training_examples_nearest

    with CaptureQueriesContext(connection) as captured:
        training_examples_nearest(state_id=state_id, embedding=query, limit=NEIGHBOURS)
    sql = next(q["sql"] for q in captured.captured_queries if "LATERAL" in q["sql"])
    with connection.cursor() as cursor:
        cursor.execute(f"SET hnsw.ef_search = {int(settings.NEIGHBOURS_EF_SEARCH)}")
        cursor.execute("SET hnsw.iterative_scan = relaxed_order")
        cursor.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) " + sql)
        lines = [row[0] for row in cursor.fetchall()]
        cursor.execute("RESET hnsw.ef_search")
        cursor.execute("RESET hnsw.iterative_scan")
    return "\n".join("    " + line for line in lines)


def server_ms(state_id: int, queries: np.ndarray) -> list[float]:
    """The database's own execution time of each lookup (EXPLAIN ANALYZE), which the load on a shared machine
    disturbs less than the round trip measured from here."""
    from tagging.selectors import training_examples_nearest

    with CaptureQueriesContext(connection) as captured:
        for query in queries:
            training_examples_nearest(state_id=state_id, embedding=query, limit=NEIGHBOURS)
    times = []
    with connection.cursor() as cursor:
        cursor.execute(f"SET hnsw.ef_search = {max(int(settings.NEIGHBOURS_EF_SEARCH), NEIGHBOURS)}")
        cursor.execute("SET hnsw.iterative_scan = relaxed_order")
        for sql in [q["sql"] for q in captured.captured_queries if "LATERAL" in q["sql"]]:
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)
            plan = cursor.fetchone()[0]
            plan = json.loads(plan) if isinstance(plan, str) else plan
            times.append(float(plan[0]["Execution Time"]))
        cursor.execute("RESET hnsw.ef_search")
        cursor.execute("RESET hnsw.iterative_scan")
    return times


def measure(
    state_id: int, queries: np.ndarray, truth: np.ndarray, rows_by_id: dict[int, int]
) -> tuple[float, float, float, float, float]:
    """p50 and p95 ms of one lookup per query (round trip), mean recall@25 against `truth`, and p50 and p95
    of the database's execution time."""
    from tagging.selectors import training_examples_nearest

    for query in queries[:20]:  # warm-up: the index pages into the buffer cache
        training_examples_nearest(state_id=state_id, embedding=query, limit=NEIGHBOURS)
    latencies = []
    recalls = []
    for query, expected in zip(queries, truth, strict=True):
        started = time.perf_counter()
        found = training_examples_nearest(state_id=state_id, embedding=query, limit=NEIGHBOURS)
        latencies.append((time.perf_counter() - started) * 1000)
        recalls.append(len({rows_by_id[i] for i, _ in found} & set(expected.tolist())) / NEIGHBOURS)
    server = server_ms(state_id, queries)
    return (
        float(np.percentile(latencies, 50)),
        float(np.percentile(latencies, 95)),
        float(np.mean(recalls)),
        float(np.percentile(server, 50)),
        float(np.percentile(server, 95)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=100_000, help="labelled examples of the tagger state")
    parser.add_argument("--base", type=int, default=1500, help="real recipes the examples are made from")
    parser.add_argument("--queries", type=int, default=300, help="held-out real recipes looked up")
    parser.add_argument("--ef-search", default="40,100,200", help="hnsw.ef_search values to measure")
    parser.add_argument("--reuse", action="store_true", help="keep the examples a previous run stored")
    args = parser.parse_args()

    from tagging.models import TrainingExample
    from tagging.selectors import training_examples_nearest, training_examples_nearest_many
    from tagging.services.recipes import embeddings_cached

    call_command("migrate", verbosity=0)
    texts = real_texts(args.base + args.queries)
    if len(texts) < args.base + args.queries:
        raise SystemExit(f"only {len(texts)} distinct recipes; lower --base or --queries")
    started = time.perf_counter()
    vectors = embeddings_cached(texts=texts)
    print(f"model: {settings.EMBEDDING_MODEL}  dimensions: {settings.EMBEDDING_DIMENSIONS}  cpus: {os.cpu_count()}")
    print(
        f"real recipes embedded: {len(texts)} ({args.base} to make examples from, {args.queries} held-out queries) "
        f"in {time.perf_counter() - started:.1f} s (cached in the benchmark database after the first run)"
    )
    base, queries = vectors[: args.base], vectors[args.base :]
    examples = synthetic_examples(base, args.examples)
    stored = TrainingExample.objects.values("state_id").order_by("state_id").first()
    if args.reuse and stored and TrainingExample.objects.count() == len(examples):
        state_id = stored["state_id"]
        print(f"examples: {len(examples)} of the previous run (same seed), index kept")
    else:
        state_id, copy_seconds, index_seconds = store_examples(examples)
        print(
            f"examples: {len(examples)} (two real recipes mixed 60-100% / 0-40% plus noise, normalised), "
            f"COPY {copy_seconds:.1f} s, HNSW index (m=16, ef_construction=64) built in {index_seconds:.1f} s"
        )
    rows_by_id = dict(TrainingExample.objects.filter(state_id=state_id).values_list("id", "row"))
    truth = exact_nearest(examples, queries, NEIGHBOURS)
    print("query plan of one lookup:")
    print(query_plan(state_id, queries[0]))

    default_ef = settings.NEIGHBOURS_EF_SEARCH
    print(f"one recipe per query, {len(queries)} held-out queries, k = {NEIGHBOURS} (target p95 <= 20 ms):")
    for ef in [int(v) for v in args.ef_search.split(",")]:
        settings.NEIGHBOURS_EF_SEARCH = ef
        p50, p95, recall, server_p50, server_p95 = measure(state_id, queries, truth, rows_by_id)
        mark = "  <- NEIGHBOURS_EF_SEARCH default" if ef == default_ef else ""
        print(
            f"  ef_search {ef:4d}: p50 {p50:6.2f} ms  p95 {p95:6.2f} ms  recall@{NEIGHBOURS} {recall:.3f}  "
            f"(in the database: p50 {server_p50:.2f} ms, p95 {server_p95:.2f} ms; load average "
            f"{os.getloadavg()[0]:.1f}){mark}"
        )
    settings.NEIGHBOURS_EF_SEARCH = default_ef

    started = time.perf_counter()
    for query in queries:
        training_examples_nearest(state_id=state_id, embedding=query, limit=NEIGHBOURS)
    one_by_one = time.perf_counter() - started
    started = time.perf_counter()
    training_examples_nearest_many(state_id=state_id, embeddings=queries, limit=NEIGHBOURS)
    batched = time.perf_counter() - started
    print(
        f"{len(queries)} recipes at ef_search {default_ef}: one query each {one_by_one * 1000:.0f} ms "
        f"({one_by_one * 1000 / len(queries):.2f} ms/recipe), one query for all {batched * 1000:.0f} ms "
        f"({batched * 1000 / len(queries):.2f} ms/recipe), ratio {one_by_one / batched:.2f}"
    )
    started = time.perf_counter()
    exact_nearest(examples, queries, NEIGHBOURS)
    print(f"exact search in numpy over the same vectors (for scale): {(time.perf_counter() - started) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
