"""Quality of the `llm` and `hybrid` strategies against rule-following models, on each shared labelled dataset.

Per dataset (../shared/datasets/*.jsonl): the taxonomy is built from the dataset's vocabulary, fold 0 of 5
(by a hash of the recipe id, feedback.evaluation.datasets.fold_of) is held out, the other folds are imported
as gold labels and the learned tagger is fitted on them; the held-out recipes (at most --max-recipes, a
fixed sample by id hash) are then evaluated with `llm` and `hybrid` by an evaluation job run in this
process (what `evaluate --strategy llm|hybrid --source NAME --here` does: the service's own path, the
gateway, the real `openai` client, real sockets) against two local OpenAI-compatible servers
(bench/oracle_server.py):
- the **oracle** answers each recipe's gold tags among those the request allows: what a perfect model
  would answer to the question each strategy asks;
- the **careless** server picks the first allowed tag of every category.

Printed per dataset and server: micro-F1 of llm and hybrid (k=3, ingredient rules applied) and their
difference, the shortlist recall of hybrid (share of gold tags similarity accepted or offered the
model), hybrid's prompt tokens over llm's (as the server counted them: tiktoken o200k_base when it can be
loaded, else the embedding model's WordPiece tokenizer), and whether each target is met (with the oracle:
hybrid F1 within 0.05 of llm F1, shortlist recall at least 0.95, hybrid prompt tokens at most 35% of llm's).

Uses its own database (`autotagger_bench_quality` on the embedded server) and empties it for each dataset;
it refuses to run on any other database (DATABASE_URL set). Meant to run in the background:

    nohup .venv/bin/python bench/llm_quality.py > /tmp/llm_quality.txt 2>&1 &
    .venv/bin/python bench/llm_quality.py --datasets basedcooking --max-recipes 50
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autotagger.settings.development")
# Its own database (another with AUTOTAGGER_BENCH_DATABASE, to run beside a benchmark that uses this one).
BENCH_DATABASE = os.environ.get("AUTOTAGGER_BENCH_DATABASE", "autotagger_bench_quality")
os.environ["AUTOTAGGER_EMBEDDED_DATABASE"] = BENCH_DATABASE
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ["DJANGO_DEBUG"] = "false"

import django  # noqa: E402

django.setup()

from bench.oracle_server import TaggingServer, careless_answer, oracle_answer, recipe_key  # noqa: E402

SHARED_CANDIDATES = (ROOT.parent / "shared" / "datasets", Path("/work/shared/datasets"))
DATASETS = ("themealdb", "basedcooking", "archanas_kitchen")
FOLDS, HELD_OUT_FOLD, K = 5, 0, 3
TARGET_F1_GAP, TARGET_RECALL, TARGET_TOKEN_RATIO = 0.05, 0.95, 0.35


def say(message: str) -> None:
    print(message, flush=True)


def tokenizer() -> tuple[str, Callable[[str], int]]:
    try:
        import tiktoken

        encoding = tiktoken.get_encoding("o200k_base")
        return "tiktoken o200k_base", lambda text: len(encoding.encode(text))
    except Exception:  # offline: the vocabulary cannot be fetched
        from autotagger.embeddings import _get_backend

        model = _get_backend()._model  # type: ignore[attr-defined]
        return (
            "the embedding model's WordPiece tokenizer (tiktoken o200k_base could not be loaded offline)",
            lambda text: len(model.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]),
        )


def shared_datasets() -> Path | None:
    return next((path for path in SHARED_CANDIDATES if path.is_dir()), None)


def id_hash(recipe_id: str) -> str:
    return hashlib.sha1(f"sample:{recipe_id}".encode()).hexdigest()


@dataclass
class Measured:
    f1: float
    prompt_tokens: int
    calls_per_recipe: float
    failures: int
    shortlist_recall: float | None = None
    similarity_alone_f1: float | None = None


def database_empty() -> None:
    """The benchmark's own database, emptied: each dataset gets its own taxonomy, labels and tagger state."""
    from django.conf import settings
    from django.core.management import call_command

    if settings.DATABASES["default"]["NAME"] != BENCH_DATABASE:
        raise SystemExit(f"Refusing to empty {settings.DATABASES['default']['NAME']!r}: not the benchmark's database")
    call_command("flush", interactive=False, verbosity=0)


def taxonomy_of(vocabulary: dict[str, dict[str, str]]) -> dict[str, Any]:
    """A taxonomy document of the dataset's categories and tags (names as written, no descriptions)."""
    return {
        "categories": [
            {
                "slug": category,
                "name": category.replace("_", " ").strip().title(),
                "default_max_tags": K,
                "tags": [{"slug": slug, "name": name} for slug, name in tags.items()],
            }
            for category, tags in vocabulary.items()
        ]
    }


def evaluation(*, content: bytes, name: str, strategy: str, source: str) -> Measured:
    """Evaluate `strategy` on the held-out recipes (`content`, JSON lines) with `source`, as `evaluate
    --strategy ... --source ... --here` does: the tagger as deployed, scored against the file's labels."""
    from feedback.evaluation.jobs import evaluation_job_run_here, evaluation_job_start

    job = evaluation_job_start(content=content, name=name, strategy=strategy, source=source, k=K, categories=None)
    job = evaluation_job_run_here(job_id=job.pk)
    if job.run is None:
        raise RuntimeError(f"The evaluation job {job.pk} ended {job.status}: {job.error}")
    metrics = job.run.metrics
    llm, hybrid = metrics["llm"], metrics.get("hybrid", {})
    for example in llm["failure_examples"]:
        say(f"    failed ({strategy}, {source}): {example}")
    return Measured(
        f1=float(metrics["overall"]["f1"]),
        prompt_tokens=int(llm["tokens"]["prompt"]),
        calls_per_recipe=float(llm["calls_per_recipe"]),
        failures=int(llm["failures"]),
        shortlist_recall=hybrid.get("shortlist_recall"),
        similarity_alone_f1=hybrid["similarity_alone"]["overall"]["f1"] if hybrid else None,
    )


@dataclass
class Prepared:
    """A dataset made ready for the held-out evaluation: its taxonomy imported, the other folds imported as gold
    labels and fitted, and the held-out sample."""

    name: str
    held_out: list[Any]  # the sampled held-out DatasetRecipes, in file order
    held_out_lines: bytes  # the same recipes as JSON lines, what an evaluation job is given
    gold: dict[tuple[str, tuple[str, ...]], dict[str, set[str]]]  # recipe_key -> labels, every held-out recipe


def dataset_prepare(*, path: Path, max_recipes: int) -> Prepared:
    """Empty the benchmark database, then import `path`'s taxonomy and training folds and fit the learned tagger
    on them (printing what it did); the held-out sample is at most `max_recipes` recipes of fold HELD_OUT_FOLD,
    chosen by a hash of the id."""
    from feedback.evaluation.datasets import dataset_read, fold_of
    from feedback.services.imports import recipes_import
    from feedback.training import tagger_fit
    from taxonomy.services.documents import taxonomy_import

    started = time.perf_counter()
    dataset = dataset_read(path)
    database_empty()
    taxonomy_import(data=taxonomy_of(dataset.vocabulary), embed_now=True)
    lines = [line for line in path.read_bytes().splitlines() if line.strip()]
    ids = [json.loads(line)["id"] for line in lines]
    held = [i for i, recipe_id in enumerate(ids) if fold_of(recipe_id, FOLDS) == HELD_OUT_FOLD]
    training = [i for i, recipe_id in enumerate(ids) if fold_of(recipe_id, FOLDS) != HELD_OUT_FOLD]
    sample = sorted(sorted(held, key=lambda i: id_hash(ids[i]))[:max_recipes])
    say(
        f"\n== {dataset.name}: {len(lines)} recipes, {len(dataset.vocabulary)} categories, "
        f"{sum(len(t) for t in dataset.vocabulary.values())} tags; held out fold {HELD_OUT_FOLD} of {FOLDS}: "
        f"{len(held)} recipes"
        + (f", tagged a sample of {len(sample)} (by a hash of the id)" if len(sample) < len(held) else "")
    )
    report = recipes_import(
        lines=[lines[i] for i in training], source=dataset.name, labeled=True, create_taxonomy=False, mapping=None
    )
    state = tagger_fit(k=K)
    say(
        f"Learned from {report.labels} gold labels of {len(training)} recipes"
        + (f" (state {state.pk}, {len(state.parameters)} categories)" if state is not None else " (nothing learned)")
        + f" in {time.perf_counter() - started:.0f}s"
    )
    by_id = {r.id: r for r in dataset.recipes}
    return Prepared(
        name=dataset.name,
        held_out=[by_id[ids[i]] for i in sample],
        held_out_lines=b"\n".join(lines[i] for i in sample) + b"\n",
        gold={
            recipe_key(r.text.title, r.text.ingredients): r.labels
            for r in dataset.recipes
            if fold_of(r.id, FOLDS) == HELD_OUT_FOLD
        },
    )


def dataset_bench(*, path: Path, max_recipes: int, count_tokens: Callable[[str], int]) -> dict[str, bool]:
    from prompts.models import LLMSource

    started = time.perf_counter()
    prepared = dataset_prepare(path=path, max_recipes=max_recipes)
    held_out, gold, sample = prepared.held_out_lines, prepared.gold, prepared.held_out
    results: dict[tuple[str, str], Measured] = {}
    for name, answer in (("oracle", oracle_answer(gold)), ("careless", careless_answer)):
        with TaggingServer(answer=answer, count_tokens=count_tokens, model=f"{name}-model") as server:
            LLMSource.objects.update_or_create(
                name=f"bench-{name}", defaults={"base_url": server.url, "model": f"{name}-model", "timeout_seconds": 30}
            )
            for strategy in ("llm", "hybrid"):
                server.part_tokens.clear()
                results[(name, strategy)] = evaluation(
                    content=held_out, name=f"{prepared.name}-held-out", strategy=strategy, source=f"bench-{name}"
                )
                if name == "oracle":
                    parts = ", ".join(f"{part} {n / len(sample):.0f}" for part, n in server.part_tokens.items())
                    say(f"  {strategy} prompt tokens per recipe by part (oracle): {parts}")
    say(f"Evaluated {len(sample)} recipes 4 times; {time.perf_counter() - started:.0f}s on this dataset")
    for name in ("oracle", "careless"):
        llm, hybrid = results[(name, "llm")], results[(name, "hybrid")]
        ratio = hybrid.prompt_tokens / llm.prompt_tokens if llm.prompt_tokens else float("nan")
        recall = hybrid.shortlist_recall
        say(
            f"  {name:<9} llm F1 {llm.f1:.3f}   hybrid F1 {hybrid.f1:.3f}   difference {hybrid.f1 - llm.f1:+.3f}   "
            f"shortlist recall {'-' if recall is None else f'{recall:.3f}'}   "
            f"prompt tokens hybrid/llm {hybrid.prompt_tokens}/{llm.prompt_tokens} = {ratio:.2f}   "
            f"calls per recipe {hybrid.calls_per_recipe:.2f}/{llm.calls_per_recipe:.2f}"
            + (f"   failures {llm.failures + hybrid.failures}" if llm.failures or hybrid.failures else "")
        )
    oracle_llm, oracle_hybrid = results[("oracle", "llm")], results[("oracle", "hybrid")]
    if oracle_hybrid.similarity_alone_f1 is not None:
        say(f"  similarity alone F1 {oracle_hybrid.similarity_alone_f1:.3f}")
    ratio = oracle_hybrid.prompt_tokens / oracle_llm.prompt_tokens if oracle_llm.prompt_tokens else float("nan")
    recall = oracle_hybrid.shortlist_recall
    targets = {
        f"hybrid F1 within {TARGET_F1_GAP} of llm F1 (oracle)": oracle_llm.f1 - oracle_hybrid.f1 <= TARGET_F1_GAP,
        f"shortlist recall >= {TARGET_RECALL}": recall is not None and recall >= TARGET_RECALL,
        f"hybrid prompt tokens <= {TARGET_TOKEN_RATIO:.0%} of llm's (oracle)": ratio <= TARGET_TOKEN_RATIO,
    }
    for target, met in targets.items():
        say(f"  target {target}: {'met' if met else 'NOT met'}")
    return targets


def datasets_each(*, datasets: str, run: Callable[[Path, Callable[[str], int]], object]) -> None:
    """`run(path, count_tokens)` for each named shared dataset that exists, after migrating the benchmark's
    database; says why when the shared folder or a dataset is missing."""
    folder = shared_datasets()
    if folder is None:
        say(f"Skipped: no shared datasets folder ({' or '.join(str(p) for p in SHARED_CANDIDATES)} is missing).")
        return

    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    name, count = tokenizer()
    say(f"Prompt tokens counted with {name}; k={K}")
    for dataset in [d.strip() for d in datasets.split(",") if d.strip()]:
        path = folder / f"{dataset}.jsonl"
        if not path.is_file():
            say(f"\n== {dataset}: skipped, {path} does not exist")
            continue
        run(path, count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated dataset names")
    parser.add_argument(
        "--max-recipes", type=int, default=400, help="held-out recipes tagged per dataset at most (a fixed sample)"
    )
    args = parser.parse_args()
    datasets_each(
        datasets=args.datasets,
        run=lambda path, count: dataset_bench(path=path, max_recipes=args.max_recipes, count_tokens=count),
    )


if __name__ == "__main__":
    main()
