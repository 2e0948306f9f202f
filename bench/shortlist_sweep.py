"""How the hybrid's shortlist policy trades recall for prompt size, on each shared labelled dataset, without any
model: the shortlist decides which gold tags a model could ever pick, so its recall and the prompt it makes are
known before a call is sent.

Per dataset the setup is bench/llm_quality.py's (taxonomy from the dataset's vocabulary, fold 0 of 5 held out,
the learned tagger fitted on the rest); every held-out recipe is scored once (SimilarityTagger.score_all, as the
hybrid does), then for each policy in the grid (HYBRID_MISS_SHARE x HYBRID_SHORTLIST_MAX_PER_K, the other
HYBRID_* settings as configured) the plan is made (`hybrid_plan`) and this prints:
- the shortlist recall: the share of gold tags accepted without the model or offered to it (the best recall
  any model can reach through the hybrid; target at least 0.95);
- tags offered per recipe, and the hybrid's prompt tokens per recipe (system and user messages as
  `prompt_messages` renders them, brief listing, no examples: what the oracle server counts), beside the llm
  strategy's prompt without its few-shot examples (every active tag with its description).
Tokens are counted as bench/llm_quality.py counts them. The default policy's line is marked.

    nice -n 10 .venv/bin/python bench/shortlist_sweep.py [--datasets themealdb,basedcooking] [--max-recipes 400]
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.llm_quality import (
    DATASETS,
    TARGET_RECALL,
    K,
    dataset_prepare,
    datasets_each,
    say,
)

MISS_SHARES = (0.05, 0.03, 0.02)
MAX_PER_K = (8.0, 10.0, 12.0, 16.0)


def dataset_sweep(*, path: Path, max_recipes: int, count_tokens: Callable[[str], int]) -> None:
    from autotagger.embeddings import embedding_model_name, embeddings_create
    from prompts.rendering import prompt_messages
    from tagging.services.config import TaggingConfig, category_requests
    from tagging.services.tagger_state import learned_model_active
    from tagging.taggers.hybrid import ShortlistPolicy, hybrid_plan
    from tagging.taggers.llm import active_tags_of, category_choices
    from tagging.taggers.similarity import SimilarityTagger
    from taxonomy.models import Tag

    prepared = dataset_prepare(path=path, max_recipes=max_recipes)
    recipes = prepared.held_out
    vectors = embeddings_create(texts=[r.text.for_embedding() for r in recipes]).vectors
    tagger = SimilarityTagger(model=embedding_model_name(), learned=learned_model_active())
    # The hybrid asks the categories the similarity strategy does (no source is needed to plan).
    requests = category_requests(config=TaggingConfig(strategy="similarity", k=K))
    scored = [
        tagger.score_all(recipe=r.text, embedding=v, requests=requests) for r, v in zip(recipes, vectors, strict=True)
    ]
    tags = {tag.pk: tag for tag in Tag.objects.all()}
    every_tag = active_tags_of(requests)

    def tokens(recipe: object, offered: dict[int, list[Tag]], *, brief: bool, slots: dict[int, int] | None) -> int:
        system, user = prompt_messages(
            recipe=recipe,  # type: ignore[arg-type]
            categories=category_choices([r for r in requests if offered.get(r.category.pk)], offered, slots),
            brief_tags=brief,
        )
        return int(count_tokens(system) + count_tokens(user))

    llm_tokens = sum(tokens(r.text, every_tag, brief=False, slots=None) for r in recipes) / len(recipes)
    default = ShortlistPolicy.from_settings()
    say(f"  llm prompt without its examples: {llm_tokens:.0f} tokens per recipe")
    for miss_share, max_per_k in itertools.product(MISS_SHARES, MAX_PER_K):
        policy = replace(default, miss_share=miss_share, max_per_k=max_per_k)
        reached = gold_total = offered_total = prompt_total = 0
        for recipe, output in zip(recipes, scored, strict=True):
            plan = hybrid_plan(scored=output, requests=requests, policy=policy)
            for request in requests:
                gold = recipe.labels.get(request.category.slug, set())
                reach = {t.slug for t in plan.accepted.get(request.category.pk, [])}
                reach |= {t.slug for t in plan.shortlist.get(request.category.pk, [])}
                reached += len(gold & reach)
                gold_total += len(gold)
            offered = {pk: [tags[t.tag_id] for t in shortlist] for pk, shortlist in plan.shortlist.items()}
            offered_total += sum(len(v) for v in offered.values())
            prompt_total += tokens(recipe.text, offered, brief=True, slots=plan.slots) if offered else 0
        recall = reached / gold_total if gold_total else float("nan")
        configured = (miss_share, max_per_k) == (default.miss_share, default.max_per_k)
        mark = "  <- the configured policy" if configured else ""
        say(
            f"  miss share {miss_share:.2f}, at most {max_per_k:>4.0f} per slot: shortlist recall {recall:.3f} "
            f"({reached}/{gold_total}, target {TARGET_RECALL}: {'met' if recall >= TARGET_RECALL else 'not met'}); "
            f"{offered_total / len(recipes):.1f} tags offered, {prompt_total / len(recipes):.0f} prompt tokens per "
            f"recipe ({prompt_total / len(recipes) / llm_tokens:.2f} of llm's without examples){mark}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(DATASETS[:2]), help="comma-separated dataset names")
    parser.add_argument("--max-recipes", type=int, default=400, help="held-out recipes per dataset at most")
    args = parser.parse_args()
    datasets_each(
        datasets=args.datasets,
        run=lambda path, count: dataset_sweep(path=path, max_recipes=args.max_recipes, count_tokens=count),
    )


if __name__ == "__main__":
    main()
