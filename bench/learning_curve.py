"""What reviews teach the learned tagger: a shared labelled dataset replayed as if reviewers corrected its
recipes 100 at a time, least sure first (the review queue's order) and in random order.

The replay is feedback.evaluation.replay (the same one `manage.py learning_curve` runs on this instance's
gold labels): fold 0 of 5 (by a hash of the recipe id) is held out and scores the tagger; the rest is the
pool reviewers draw from. After each batch the tagger is refitted on the recipes reviewed so far as the
service refits it (tagging.learning.fit), and its micro-F1 on the held-out part is printed beside the same
replay in random order (mean of --seeds) and the cross-validated F1 on all labels (5 folds by id hash).
A pool smaller than --limit (themealdb: 586 recipes, 469 in the pool) ends at the whole pool, and the
"at most 600 of 1,000" target is then scaled to the same share of it.

Embeddings are computed once through the embeddings gateway (autotagger.embeddings) and kept in
AUTOTAGGER_DATA_DIR/bench/ for the next run; so are the random orders' F1 with --reuse-random (they do not depend
on the acquisition, and they are most of a run's time), keyed by a digest of the learner's code, so that a changed
learner measures them again. No database is needed unless --save stores the curve (the instance's database: the
feedback page draws it).

    .venv/bin/python bench/learning_curve.py [--dataset themealdb] [--batch 100] [--limit 1000]
        [--seeds 0,1,2] [--acquisition margin|rotation|density|explore] [--aggregate min|mean] [--diverse]
        [--cv-folds 5] [--reuse-random] [--output curve.json] [--save]
    nohup .venv/bin/python bench/learning_curve.py --dataset archanas_kitchen > /tmp/curve.txt 2>&1 &
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autotagger.settings.development")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ["DJANGO_DEBUG"] = "false"

import django  # noqa: E402
import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from shared_rows import SHARED_CANDIDATES  # noqa: E402

from autotagger.embeddings import embedding_model_name, embeddings_create  # noqa: E402
from feedback.evaluation import replay  # noqa: E402
from feedback.evaluation.datasets import Dataset, dataset_read  # noqa: E402
from feedback.evaluation.runner import category_specs  # noqa: E402
from tagging import learning  # noqa: E402
from taxonomy.limits import DEFAULT_TAGS_PER_CATEGORY  # noqa: E402

EMBED_CHUNK = 256


def say(message: str) -> None:
    print(message, flush=True)


def dataset_path(name: str) -> Path:
    for folder in SHARED_CANDIDATES:
        path = folder / f"{name}.jsonl"
        if path.is_file():
            return path
    raise SystemExit(f"No dataset {name}.jsonl in {' or '.join(str(f) for f in SHARED_CANDIDATES)}")


@dataclass(frozen=True)
class EmbeddedDataset:
    """A shared dataset as the learner reads it: its recipes with their embeddings and labels, and its
    categories with their tags' embeddings."""

    dataset: Dataset
    data: learning.LabelledSet
    specs: list[learning.CategorySpec]


def dataset_embedded(name: str) -> EmbeddedDataset:
    """The shared dataset `name`, its recipes and tags embedded through the gateway (kept on disk, see embedded)."""
    dataset = dataset_read(dataset_path(name))
    embeddings = embedded([r.text.for_embedding() for r in dataset.recipes], key=dataset.name)
    specs = category_specs(
        vocabulary=dataset.vocabulary,
        categories=list(dataset.vocabulary),
        embed=lambda texts: embedded(list(texts), key=f"{dataset.name}-tags"),
    )
    data = learning.LabelledSet(
        embeddings=embeddings, texts=[r.text for r in dataset.recipes], labels=[r.labels for r in dataset.recipes]
    )
    return EmbeddedDataset(dataset=dataset, data=data, specs=specs)


def embedded(texts: list[str], *, key: str) -> np.ndarray:
    """Vectors of `texts` from the gateway, kept on disk under a key of the texts and the model."""
    digest = hashlib.sha256(("\x00".join(texts) + embedding_model_name()).encode()).hexdigest()[:16]
    path = Path(settings.DATA_DIR) / "bench" / f"{key}-{digest}.npy"
    if path.is_file():
        return np.load(path)
    vectors = [
        embeddings_create(texts=texts[start : start + EMBED_CHUNK]).vectors
        for start in range(0, len(texts), EMBED_CHUNK)
    ]
    matrix = np.concatenate(vectors) if vectors else np.zeros((0, settings.EMBEDDING_DIMENSIONS), dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, matrix)
    return matrix


def learner_digest() -> str:
    """A digest of the code a random order's F1 comes from (the fit, the signals, calibration, the replay's
    scoring): a cached curve measured by another learner is not reused, whether or not MODEL_VERSION moved."""
    from feedback.evaluation import metrics
    from tagging import calibration, features, signals, stacking

    modules = (learning, stacking, features, signals, calibration, replay, metrics)
    source = b"".join(Path(str(module.__file__)).read_bytes() for module in modules)
    return hashlib.sha256(source).hexdigest()[:12]


def random_runs_path(*, dataset: str, recipes: int, k: int, batch: int, limit: int) -> Path:
    name = f"{dataset}-random-n{recipes}-k{k}-b{batch}-l{limit}-{learner_digest()}.json"
    return Path(settings.DATA_DIR) / "bench" / name


def random_runs_read(path: Path) -> dict[int, list[float]]:
    if not path.is_file():
        return {}
    return {int(seed): run for seed, run in json.loads(path.read_text()).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="themealdb", help="a file of ../shared/datasets, without .jsonl")
    parser.add_argument("--batch", type=int, default=replay.DEFAULT_BATCH)
    parser.add_argument("--limit", type=int, default=replay.DEFAULT_LIMIT)
    parser.add_argument("--seeds", default=",".join(map(str, replay.DEFAULT_SEEDS)), help="random orders, averaged")
    parser.add_argument(
        "--aggregate", choices=["mean", "min"], default=replay.DEFAULT_MARGIN_AGGREGATE, help="margin across categories"
    )
    parser.add_argument("--acquisition", choices=replay.ACQUISITIONS, default=replay.DEFAULT_ACQUISITION)
    parser.add_argument(
        "--reuse-random",
        action="store_true",
        help="take the random orders' F1 from an earlier run with the same dataset, k, batch and limit, keep new ones",
    )
    parser.add_argument("--diverse", action="store_true", help="skip near-copies within an uncertainty batch")
    parser.add_argument("--cv-folds", type=int, default=replay.DEFAULT_CV_FOLDS, help="0 skips the CV F1")
    parser.add_argument(
        "--cv-f1",
        type=float,
        help="with --cv-folds 0: the cross-validated F1 on all labels measured beforehand (manage.py evaluate)",
    )
    parser.add_argument("--k", type=int, default=DEFAULT_TAGS_PER_CATEGORY)
    parser.add_argument("--output", help="write the curve as JSON here")
    parser.add_argument("--save", action="store_true", help="store the curve for the feedback page")
    args = parser.parse_args()

    loaded = dataset_embedded(args.dataset)
    dataset = loaded.dataset
    say(f"{dataset.name}: {len(dataset.recipes)} recipes, categories {', '.join(dataset.vocabulary)}")
    replay_set = replay.ReplaySet(ids=[r.id for r in dataset.recipes], data=loaded.data, categories=loaded.specs)
    cache = random_runs_path(
        dataset=dataset.name, recipes=len(dataset.recipes), k=args.k, batch=args.batch, limit=args.limit
    )
    known = random_runs_read(cache) if args.reuse_random else {}
    # Hundreds of small regressions per fit: threads fighting over the cores cost more than they give (the
    # embedding model above keeps its threads).
    with threadpool_limits(limits=1):
        curve = replay.learning_curve_replay(
            replay_set=replay_set,
            k=args.k,
            batch=args.batch,
            limit=args.limit,
            seeds=[int(s) for s in args.seeds.split(",") if s.strip()],
            aggregate=args.aggregate,
            diverse=args.diverse,
            acquisition=args.acquisition,
            random_runs=known,
            cv_folds=args.cv_folds,
            progress=say,
        )

    if args.reuse_random:
        runs = random_runs_read(cache)  # again: another run may have added seeds meanwhile
        for index, seed in enumerate(curve.seeds):
            runs[seed] = [p.random_f1_runs[index] for p in curve.points]
        cache.write_text(json.dumps({str(seed): run for seed, run in sorted(runs.items())}))
    if args.cv_f1 is not None and curve.cv_f1 is None:
        curve.cv_f1 = args.cv_f1
    say("")
    for line in replay.learning_curve_report(curve, name=dataset.name):
        say(line)
    say(f"({curve.seconds:.0f}s)")

    if args.output:
        Path(args.output).write_text(json.dumps({"dataset": dataset.name, **curve.as_json()}, indent=1))
    if args.save:
        from feedback.services.learning_curves import learning_curve_store

        stored = learning_curve_store(dataset=dataset.name, curve=curve)
        say(f"Stored as learning curve {stored.pk}")


if __name__ == "__main__":
    main()
