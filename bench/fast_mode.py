"""Fast mode (the static model2vec model distilled from the full model) against the full model, in one run.

Prints:
- encode only: recipes/s of the fast model and of the full model on the same real recipes (target for the
  fast one: at least 500 recipes/s on this machine);
- end-to-end bulk tagging (`recipes_tag_bulk`: embed, score every tag, store runs and assignments) in fast
  mode in one process (target: at least 500 recipes/s), and with `--processes N` also in N forked processes
  taking the batches in turn (as N workers take a re-tagging job's chunks; reported apart), and in full mode
  (`--bulk-full`, 0 to skip), recipes/s;
- micro-F1 of the full and the fast model on each shared dataset (../shared/datasets), with the learned tagger
  cross-validated as `manage.py evaluate --folds` does (runner.learned_report: the same folds, fit and metrics,
  without the baselines), and the loss (target: within 0.03 of the full model).

The full model encodes only ~13 recipes/s here, so its vectors of the datasets are cached in
.data/bench/fast_mode (by text); --limit samples each dataset (the same recipes every run, by a hash of the
id). Uses its own database (`autotagger_bench_fast_mode` on the embedded server) unless DATABASE_URL is set.
Distils the fast model first if it is not there.

    nice -n 10 .venv/bin/python bench/fast_mode.py [--limit 600] [--folds 5] [--bulk 2000] [--processes 2] [--learned]
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autotagger.settings.development")
# --learned tags with a learned tagger state, fitted once in a database of its own (see bulk()).
os.environ.setdefault(
    "AUTOTAGGER_EMBEDDED_DATABASE",
    "autotagger_bench_fast_learned" if "--learned" in sys.argv else "autotagger_bench_fast_mode",
)
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ["DJANGO_DEBUG"] = "false"

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connections  # noqa: E402

from autotagger.embeddings import (  # noqa: E402
    EmbeddingMode,
    embedding_fast_distill,
    embedding_model_name,
    embeddings_cache_clear,
    embeddings_create,
)
from feedback.evaluation import runner  # noqa: E402
from feedback.evaluation.datasets import Dataset, dataset_read  # noqa: E402
from taxonomy.limits import DEFAULT_TAGS_PER_CATEGORY  # noqa: E402

DATASETS = ("themealdb", "basedcooking", "archanas_kitchen")
TARGET_RATE = 500.0
TARGET_LOSS = 0.03


class VectorCache:
    """The full model's vectors by text, kept on disk between runs (the full model is the slow part)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.vectors: dict[str, np.ndarray] = {}
        if path.is_file():
            with np.load(path) as stored:
                self.vectors = dict(zip(stored["keys"].tolist(), stored["vectors"], strict=True))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        keys = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]
        missing = list(dict.fromkeys(k for k in keys if k not in self.vectors))
        if missing:
            first = {k: t for k, t in zip(keys, texts, strict=True)}
            batch = embeddings_create(texts=[first[k] for k in missing])
            self.vectors.update(zip(missing, batch.vectors, strict=True))
            self.save()
        return np.stack([self.vectors[k] for k in keys])

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial.npz")
        np.savez(partial, keys=np.array(list(self.vectors)), vectors=np.stack(list(self.vectors.values())))
        partial.replace(self.path)


def sample(dataset: Dataset, limit: int | None) -> Dataset:
    if limit is None or len(dataset.recipes) <= limit:
        return dataset
    chosen = sorted(dataset.recipes, key=lambda r: hashlib.sha256(r.id.encode()).hexdigest())[:limit]
    return Dataset(name=dataset.name, sha256=dataset.sha256, recipes=chosen, vocabulary=dataset.vocabulary)


def fast_embed(texts: Sequence[str]) -> np.ndarray:
    return embeddings_create(texts=list(texts), mode=EmbeddingMode.FAST).vectors


def encode_rates(texts: list[str], full_count: int) -> tuple[float, float]:
    embeddings_create(texts=texts[:16], mode=EmbeddingMode.FAST)  # warm-up: loading, first allocations
    embeddings_cache_clear()
    started = time.perf_counter()
    embeddings_create(texts=texts, mode=EmbeddingMode.FAST)
    fast_rate = len(texts) / (time.perf_counter() - started)
    embeddings_create(texts=texts[-8:])
    embeddings_cache_clear()
    started = time.perf_counter()
    embeddings_create(texts=texts[:full_count])
    full_rate = full_count / (time.perf_counter() - started)
    embeddings_cache_clear()
    return fast_rate, full_rate


def bulk_rate(
    recipes_data: list[tuple[str, list[str], str]], mode: str, batch: int, processes: int = 1
) -> tuple[float, float]:
    """Recipes/s of `recipes_tag_bulk` over the recipes, in batches of `batch`, and the CPU milliseconds per recipe
    of this process (one process only: 0 otherwise; on a shared machine it moves less than the rate); with
    `processes` > 1, that many forked processes take the batches in turn (as several workers take a re-tagging
    job's chunks)."""
    from tagging.models import Recipe, TaggingRun
    from tagging.services.config import TaggingConfig
    from tagging.services.recipes import recipe_build
    from tagging.services.runs import recipes_tag_bulk

    TaggingRun.objects.filter(recipe__source="bench-fast").delete()
    Recipe.objects.filter(source="bench-fast").delete()
    recipes = Recipe.objects.bulk_create(
        [
            recipe_build(title=t, ingredients=i, instructions=s, external_id=None, source="bench-fast")
            for t, i, s in recipes_data
        ],
        batch_size=1000,
    )
    embeddings_cache_clear()
    config = TaggingConfig(embedding=mode)
    # Warm-up (models, the tag matrix, first allocations) on a recipe of the set, outside the timing.
    recipes_tag_bulk(recipes=recipes[:1], config=config, sets_current=False)
    batches = [recipes[start : start + batch] for start in range(0, len(recipes), batch)]
    if processes <= 1:
        started, cpu = time.perf_counter(), time.process_time()
        for part in batches:
            recipes_tag_bulk(recipes=part, config=config)
        cpu_ms = 1000 * (time.process_time() - cpu) / len(recipes)
        return len(recipes) / (time.perf_counter() - started), cpu_ms
    connections.close_all()  # each process opens its own connection
    context = multiprocessing.get_context("fork")
    workers = [
        context.Process(target=_bulk_worker, args=(batches[number::processes], config)) for number in range(processes)
    ]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - started
    if any(worker.exitcode != 0 for worker in workers):
        raise SystemExit("a bulk tagging process failed")
    return len(recipes) / seconds, 0.0


def _bulk_worker(batches: list[Any], config: Any) -> None:
    from tagging.services.runs import recipes_tag_bulk

    for part in batches:
        recipes_tag_bulk(recipes=part, config=config)
    connections.close_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=600, help="recipes of each dataset at most (default 600)")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    parser.add_argument("--k", type=int, default=DEFAULT_TAGS_PER_CATEGORY, help="tags per category at most")
    parser.add_argument("--encode", type=int, default=5000, help="recipes for the fast encode rate (default 5000)")
    parser.add_argument("--encode-full", type=int, default=100, help="recipes for the full model's encode rate")
    parser.add_argument("--bulk", type=int, default=2000, help="recipes for fast bulk tagging (default 2000)")
    parser.add_argument("--bulk-full", type=int, default=100, help="recipes for full-model bulk tagging")
    parser.add_argument("--batch", type=int, default=500, help="recipes per recipes_tag_bulk call (default 500)")
    parser.add_argument(
        "--processes", type=int, default=1, help="also measure fast bulk tagging in this many processes (default 1)"
    )
    parser.add_argument(
        "--learned",
        action="store_true",
        help="bulk tagging with the learned tagger, as deployed: the starter set loaded and fitted (load_starter_set, "
        "once, in the database autotagger_bench_fast_learned); without it every category is zero-shot",
    )
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated dataset names")
    parser.add_argument(
        "--parts", default="encode,bulk,f1", help="what to measure, comma-separated (default encode,bulk,f1)"
    )
    args = parser.parse_args()

    path, seconds = embedding_fast_distill()
    print(
        f"full: {embedding_model_name()}  fast: {embedding_model_name(mode=EmbeddingMode.FAST)} ({path})"
        f"{f', distilled in {seconds:.1f}s' if seconds else ''}  cpus: {os.cpu_count()}"
    )
    shared = ROOT.parent / "shared" / "datasets"
    archanas = dataset_read(shared / "archanas_kitchen.jsonl")
    texts = [r.text.for_embedding() for r in archanas.recipes][: args.encode]

    parts = set(args.parts.split(","))
    if "encode" in parts:
        fast_rate, full_rate = encode_rates(texts, args.encode_full)
        verdict = "meets" if fast_rate >= TARGET_RATE else "MISSES"
        print(f"encode only: fast {fast_rate:.0f} recipes/s over {len(texts)} recipes ({verdict} >= {TARGET_RATE:.0f})")
        print(
            f"             full {full_rate:.1f} recipes/s over {args.encode_full}; ratio {fast_rate / full_rate:.0f}x"
        )
    if "bulk" in parts:
        bulk(archanas, args)
    if "f1" in parts:
        f1(shared, args)


def bulk(archanas: Dataset, args: argparse.Namespace) -> None:
    call_command("migrate", verbosity=0)
    call_command("taxonomy_import", "--default", "--if-empty", "--embed-now", verbosity=0)
    if args.learned:
        from tagging.services.tagger_state import learned_model_active

        if learned_model_active(mode=EmbeddingMode.FAST) is None:
            call_command("load_starter_set")  # fits the full model's state and the fast mode's
        learned = learned_model_active(mode=EmbeddingMode.FAST)
        if learned is None:
            raise SystemExit("no learned state for fast mode: use a fresh database for --learned")
        print(f"learned tagger: {len(learned.categories)} categories learned (starter set)", flush=True)
    else:
        print("zero-shot tagger (no learned state)", flush=True)
    data = [(r.text.title, list(r.text.ingredients), r.text.instructions) for r in archanas.recipes]
    fast_bulk, cpu_ms = bulk_rate(data[: args.bulk], EmbeddingMode.FAST, args.batch)
    verdict = "meets" if fast_bulk >= TARGET_RATE else "MISSES"
    print(
        f"bulk tagging (embed + score + store, batches of {args.batch}), one process: fast {fast_bulk:.0f} "
        f"recipes/s over {args.bulk} ({verdict} >= {TARGET_RATE:.0f}); {cpu_ms:.2f} ms CPU a recipe in this process "
        f"(PostgreSQL's apart), load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    if args.processes > 1:
        parallel, _ = bulk_rate(data[: args.bulk], EmbeddingMode.FAST, args.batch, processes=args.processes)
        verdict = "meets" if parallel >= TARGET_RATE else "MISSES"
        print(
            f"bulk tagging, {args.processes} processes taking batches in turn: fast {parallel:.0f} recipes/s over "
            f"{args.bulk} ({verdict} >= {TARGET_RATE:.0f})",
            flush=True,
        )
    if args.bulk_full:
        full_bulk, _ = bulk_rate(data[: args.bulk_full], EmbeddingMode.FULL, args.batch)
        print(f"bulk tagging, one process: full {full_bulk:.1f} recipes/s over {args.bulk_full}")


def f1(shared: Path, args: argparse.Namespace) -> None:
    cache = VectorCache(Path(settings.DATA_DIR) / "bench" / "fast_mode" / f"{Path(settings.EMBEDDING_MODEL).name}.npz")
    print(f"micro-F1, {args.folds}-fold cross-validated learned tagger, k={args.k}:")
    for name in args.datasets.split(","):
        dataset = sample(dataset_read(shared / f"{name}.jsonl"), args.limit)
        scores, seconds = {}, {}
        for mode, embed in ((EmbeddingMode.FULL, cache.embed), (EmbeddingMode.FAST, fast_embed)):
            started = time.perf_counter()
            report = runner.learned_report(test=dataset, folds=args.folds, k=args.k, embed=embed)
            scores[mode] = report.overall_f1
            seconds[mode] = time.perf_counter() - started
        loss = scores[EmbeddingMode.FULL] - scores[EmbeddingMode.FAST]
        verdict = "within" if loss <= TARGET_LOSS else "LOSS ABOVE"
        print(
            f"  {name:<17} {len(dataset.recipes):>5} recipes  full {scores[EmbeddingMode.FULL]:.3f}  "
            f"fast {scores[EmbeddingMode.FAST]:.3f}  loss {loss:+.3f} ({verdict} {TARGET_LOSS})  "
            f"[{seconds[EmbeddingMode.FULL]:.0f}s, {seconds[EmbeddingMode.FAST]:.0f}s]",
            flush=True,
        )


if __name__ == "__main__":
    main()
