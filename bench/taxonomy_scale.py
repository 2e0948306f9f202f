"""Similarity tagging latency as the taxonomy grows, zero-shot and learned, measured in one run.

For each taxonomy size (default: 200 and 2,000 tags) it prints the p50/p95 of one recipe's tagging with the
embedding excluded (what `tagging.services.runs._tag` does after embedding: load the active tagger state,
score every requested category with SimilarityTagger.tag), and the ratio of the large taxonomy's p50 to the
small one's (target: at most 1.2). Twice: zero-shot (no tagger state), and with a tagger fitted on labels.

The taxonomy is the default one grown by variants of its tags (a "Coastal Italian" beside "Italian"), each
with its own name, synonyms and description, embedded by the configured model. The labels are the zero-shot
tagger's top two tags per category on the training recipes (stored as gold labels and fitted by
`tagger_fit`, the worker's own path): what matters here is the shape of the fitted model, not its quality.

Each figure is checked against a reference scorer that scores every tag of every category one by one, the way
the tagger did before it kept a tag matrix: similarities from pgvector, each tag's lexical evidence from its
own pattern, each tag's text-model probability from its own `predict_proba`. It prints the recall of the
reference's tags (each category's top k at or above its threshold, and everything at or above the threshold)
within what the tagger returned, the largest score difference, and the reference's own latency.

The recipes come from ../shared/datasets/themealdb.jsonl (or the demo recipes without it). Uses its own
database (`autotagger_bench_scale` on the embedded server) unless DATABASE_URL is set.

    nice -n 10 .venv/bin/python bench/taxonomy_scale.py [--sizes 200,2000] [--recipes 100] [--train 200]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autotagger.settings.development")
os.environ.setdefault("AUTOTAGGER_EMBEDDED_DATABASE", "autotagger_bench_scale")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ["DJANGO_DEBUG"] = "false"

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from django.core.management import call_command  # noqa: E402
from shared_rows import DATASETS, demo_rows, shared_rows  # noqa: E402

SOURCE = "bench-scale"
DATASET = DATASETS / "themealdb.jsonl"
VARIANTS = [
    "Coastal",
    "Rustic",
    "Festive",
    "Street",
    "Royal",
    "Weeknight",
    "Heritage",
    "Mountain",
    "Village",
    "Modern",
    "Imperial",
    "Harvest",
]
VARIANT_SUFFIX = "-v-"


def dataset_recipes(count: int) -> list[dict[str, Any]]:
    rows = shared_rows(names=["themealdb"]) or demo_rows()
    return [
        {
            "title": f"{rows[i % len(rows)]['title']}" + (f" ({i // len(rows)})" if i >= len(rows) else ""),
            "ingredients": list(rows[i % len(rows)]["ingredients"]),
            "instructions": str(rows[i % len(rows)].get("instructions") or "")[:4000],
        }
        for i in range(count)
    ]


def taxonomy_grow(size: int) -> int:
    """Make the taxonomy `size` active tags: the default ones and variants of them (embedded now)."""
    from taxonomy.embedding import tags_embed
    from taxonomy.models import Tag

    Tag.objects.filter(slug__contains=VARIANT_SUFFIX).delete()
    base = list(Tag.objects.filter(active=True).select_related("category").order_by("category_id", "id"))
    wanted = max(0, size - len(base))
    rounds = math.ceil(wanted / len(base)) if base else 0
    if rounds > len(VARIANTS):
        raise SystemExit(f"at most {len(base) * (len(VARIANTS) + 1)} tags")
    variants = []
    for variant in VARIANTS[:rounds]:
        for tag in base:
            if len(variants) == wanted:
                break
            variants.append(
                Tag(
                    category=tag.category,
                    slug=f"{tag.slug}{VARIANT_SUFFIX}{variant.lower()}"[:100],
                    name=f"{variant} {tag.name}"[:100],
                    description=f"{variant} {tag.name.lower()}: {tag.description}",
                    synonyms=[f"{variant.lower()} {s}" for s in tag.synonyms],
                    active=True,
                )
            )
    created = Tag.objects.bulk_create(variants)
    if created:
        tags_embed(tag_ids=[t.pk for t in created])
    return Tag.objects.filter(active=True).count()


@dataclass
class Measured:
    latencies_ms: list[float]
    reference_ms: list[float]
    top_recall: tuple[int, int]  # found, wanted
    above_recall: tuple[int, int]
    max_score_difference: float


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class ReferenceScorer:
    """Every tag scored on its own, as the tagger did before its tag matrix (see the module docstring)."""

    def __init__(self, *, model: str, learned: Any) -> None:
        self.model = model
        self.learned = learned

    def scores(self, *, recipe: Any, embedding: np.ndarray, request: Any) -> list[tuple[str, float, float]]:
        """Every candidate tag of the request's category with the score the tagger gives it and the threshold
        that applies to it, unfiltered except where the tagger's rules drop a tag (the zero-shot relative
        margin)."""
        from pgvector.django import CosineDistance

        from tagging.features import lexical_evidence
        from tagging.taggers.similarity import RELATIVE_MARGIN, calibrated_score
        from taxonomy.models import Tag

        rows = list(
            Tag.objects.filter(category_id=request.category.pk, active=True, embedding_model=self.model)
            .exclude(embedding__isnull=True)
            .annotate(distance=CosineDistance("embedding", embedding))
            .order_by("id")
            .values_list("slug", "name", "synonyms", "distance")
        )
        fields = recipe.lexical_fields()
        slug = request.category.slug
        learned = self.learned.categories.get(slug) if self.learned is not None else None
        result: list[tuple[str, float, float]] = []
        unseen = rows
        if learned is not None:
            probabilities = self._learned_probabilities(recipe, embedding, slug)
            position = {s: j for j, s in enumerate(learned.tag_slugs)}
            threshold = request.override if request.override is not None else learned.threshold
            result = [
                (row[0], round(float(probabilities[position[row[0]]]), 4), threshold)
                for row in rows
                if row[0] in position
            ]
            unseen = [row for row in rows if row[0] not in position]
        if unseen:
            best = max(1.0 - float(row[3]) for row in unseen)
            for tag_slug, name, synonyms, distance in unseen:
                similarity = 1.0 - float(distance)
                lexical = lexical_evidence(name, synonyms, fields)
                if lexical == 0.0 and similarity < best - RELATIVE_MARGIN:
                    continue
                result.append((tag_slug, calibrated_score(similarity=similarity, lexical=lexical), request.threshold))
        return result

    def _learned_probabilities(self, recipe: Any, embedding: np.ndarray, slug: str) -> np.ndarray:
        from tagging import learning
        from tagging.features import dense_features, lexical_evidence
        from tagging.signals import neighbour_features, prior
        from tagging.stacking import sigmoid

        learned = self.learned
        model, spec, text_model = learned.categories[slug], learned.specs[slug], learned.text_model
        e = np.asarray(embedding, dtype=np.float32)[None, :]
        indices, sims = learned.neighbours.nearest(e, learning.NEIGHBOURS, exclude_self=False)
        x = text_model._join(text_model.vectorizer.transform([recipe.for_embedding()]), dense_features([recipe]))
        text_probs = np.array(
            [[c if isinstance(c, float) else c.predict_proba(x)[0, 1] for c in text_model.models[slug]]],
            dtype=np.float32,
        )
        fields = recipe.lexical_fields()
        lexical = np.array([[lexical_evidence(t.name, t.synonyms, fields) for t in spec.tags]], dtype=np.float32)
        vote, mass = neighbour_features(indices, sims, learned.neighbour_labels[slug])
        features = learning._features(
            embeddings=e,
            lexical=lexical,
            tag_matrix=np.stack([t.embedding for t in spec.tags]).astype(np.float32),
            vote=vote,
            mass=mass,
            prototype_sims=e @ model.prototypes.T,
            prior=prior(model.support, model.labelled),
            text_probs=text_probs,
        )
        return model.scores(sigmoid(features @ model.weights + model.bias))[0]


def measure(*, recipes: list[Any], embeddings: np.ndarray, k: int) -> Measured:
    from autotagger.embeddings import embedding_model_name
    from tagging.services.config import TaggingConfig, category_requests
    from tagging.services.rules import requests_widened
    from tagging.services.tagger_state import learned_model_active
    from tagging.taggers.similarity import SimilarityTagger

    model = embedding_model_name()
    requests = requests_widened(requests=category_requests(config=TaggingConfig(k=k)))
    wide = requests_widened(requests=category_requests(config=TaggingConfig(k=20)))
    # Warm-up: the tagger state and the tag matrix load once per process.
    SimilarityTagger(model=model, learned=learned_model_active()).tag(
        recipe=recipes[0], embedding=embeddings[0], requests=requests
    )
    latencies, reference_ms = [], []
    top_found = top_wanted = above_found = above_wanted = 0
    worst = 0.0
    for recipe, embedding in zip(recipes, embeddings, strict=True):
        started = time.perf_counter()
        output = SimilarityTagger(model=model, learned=learned_model_active()).tag(
            recipe=recipe, embedding=embedding, requests=requests
        )
        latencies.append((time.perf_counter() - started) * 1000)
        wide_output = SimilarityTagger(model=model, learned=learned_model_active()).tag(
            recipe=recipe, embedding=embedding, requests=wide
        )
        started = time.perf_counter()
        reference = ReferenceScorer(model=model, learned=learned_model_active())
        expected = {r.category.pk: reference.scores(recipe=recipe, embedding=embedding, request=r) for r in requests}
        reference_ms.append((time.perf_counter() - started) * 1000)
        for request, wide_request in zip(requests, wide, strict=True):
            scores = sorted(expected[request.category.pk], key=lambda s: (-s[1], s[0]))
            above = [(slug, score) for slug, score, threshold in scores if score >= threshold and score > 0.0]
            top = above[: request.k]
            got = {t.slug: t.score for t in output.tags[request.category.pk]}
            got_wide = {t.slug: t.score for t in wide_output.tags[wide_request.category.pk]}
            top_wanted += len(top)
            top_found += sum(1 for slug, _ in top if slug in got)
            above_wanted += len(above[: wide_request.k])
            above_found += sum(1 for slug, _ in above[: wide_request.k] if slug in got_wide)
            for slug, score in top:
                if slug in got:
                    worst = max(worst, abs(got[slug] - score))
    return Measured(latencies, reference_ms, (top_found, top_wanted), (above_found, above_wanted), worst)


def labels_fit(*, recipes: list[Any], k: int) -> None:
    """Gold labels from the zero-shot tagger's top two tags per category on `recipes`, and a fit on them."""
    from django.contrib.auth import get_user_model

    from feedback.models import GoldLabel, GoldLabelSource
    from feedback.training import tagger_fit
    from tagging.services.config import TaggingConfig, category_requests
    from tagging.services.tagger_state import tagger_state_retire
    from taxonomy.models import Category, Tag

    tagger_state_retire()
    GoldLabel.objects.filter(recipe__source=SOURCE).delete()
    from tagging.services.runs import recipes_predict

    slugs = [r.category.slug for r in category_requests(config=TaggingConfig(k=2))]
    predicted = recipes_predict(
        texts=[r.text for r in recipes],
        embeddings=np.stack([np.asarray(r.embedding, dtype=np.float32) for r in recipes]),
        category_slugs=slugs,
        k=2,
    )
    categories = {c.slug: c.pk for c in Category.objects.all()}
    tag_ids = {(c, s): pk for pk, c, s in Tag.objects.values_list("id", "category_id", "slug")}
    user = get_user_model().objects.filter(is_superuser=True).first()
    GoldLabel.objects.bulk_create(
        [
            GoldLabel(
                recipe=recipe, tag_id=tag_ids[(categories[slug], tag)], source=GoldLabelSource.IMPORT, created_by=user
            )
            for recipe, prediction in zip(recipes, predicted, strict=True)
            for slug, tags in prediction.items()
            for tag, _ in tags
        ],
        batch_size=1000,
    )
    tagger_fit(k=k)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="200,2000", help="taxonomy sizes (active tags), small first")
    parser.add_argument("--recipes", type=int, default=100, help="recipes whose tagging is timed")
    parser.add_argument("--train", type=int, default=200, help="labelled recipes the learned tagger is fitted on")
    parser.add_argument("--k", type=int, default=3)
    args = parser.parse_args()

    from autotagger.embeddings import embedding_model_name
    from feedback.models import GoldLabel
    from tagging.models import Recipe, TaggingRun
    from tagging.services.recipes import recipe_build, recipes_embed
    from tagging.services.tagger_state import tagger_state_retire

    call_command("migrate", verbosity=0)
    call_command("taxonomy_import", "--default", "--if-empty", "--embed-now", verbosity=0)
    tagger_state_retire()
    GoldLabel.objects.filter(recipe__source=SOURCE).delete()
    TaggingRun.objects.filter(recipe__source=SOURCE).delete()
    Recipe.objects.filter(source=SOURCE).delete()
    data = dataset_recipes(args.train + args.recipes)
    stored = Recipe.objects.bulk_create(
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
    recipes_embed(recipes=stored)
    train, timed = stored[: args.train], stored[args.train :]
    texts = [r.text for r in timed]
    embeddings = np.stack([np.asarray(r.embedding, dtype=np.float32) for r in timed])
    print(f"model: {embedding_model_name()}  cpus: {os.cpu_count()}  origin: {DATASET if DATASET.exists() else 'demo'}")
    print(f"timed recipes: {len(timed)}, labelled recipes for the learned tagger: {len(train)}, k={args.k}")

    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[tuple[str, int], Measured] = {}
    actual: dict[int, int] = {}
    for size in sizes:
        actual[size] = taxonomy_grow(size)
        tagger_state_retire()
        results[("zero-shot", size)] = measure(recipes=texts, embeddings=embeddings, k=args.k)
        started = time.perf_counter()
        labels_fit(recipes=train, k=args.k)
        fit_seconds = time.perf_counter() - started
        results[("learned", size)] = measure(recipes=texts, embeddings=embeddings, k=args.k)
        print(f"{actual[size]} tags: labelled and fitted in {fit_seconds:.0f} s")

    for mode in ("zero-shot", "learned"):
        for size in sizes:
            m = results[(mode, size)]
            print(
                f"{mode:9s} {actual[size]:5d} tags: p50 {percentile(m.latencies_ms, 50):6.1f} ms  "
                f"p95 {percentile(m.latencies_ms, 95):6.1f} ms  | reference (per tag) p50 "
                f"{percentile(m.reference_ms, 50):6.1f} ms  | recall top {args.k}: "
                f"{m.top_recall[0]}/{m.top_recall[1]}, above threshold: {m.above_recall[0]}/{m.above_recall[1]}; "
                f"max score difference {m.max_score_difference:.4f}"
            )
        small, large = results[(mode, sizes[0])], results[(mode, sizes[-1])]
        ratio = percentile(large.latencies_ms, 50) / percentile(small.latencies_ms, 50)
        print(f"{mode:9s} p50 at {actual[sizes[-1]]} / at {actual[sizes[0]]} tags: {ratio:.2f}  (target <= 1.2)")
    taxonomy_grow(0)
    tagger_state_retire()


if __name__ == "__main__":
    main()
