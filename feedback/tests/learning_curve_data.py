"""A small synthetic labelled set for the learning-curve tests: three cuisines whose recipes cluster in
embedding space and name their own ingredients, plus a share of fusion dishes halfway between two cuisines
(labelled with one of them) that the tagger cannot be sure of. No embedding model needed."""

from __future__ import annotations

import numpy as np

from autotagger.recipe_text import RecipeText
from feedback.evaluation.replay import ReplaySet
from tagging.learning import CategorySpec, LabelledSet, TagSpec

DIMENSIONS = 24
CUISINES = {
    "italian": ["basil", "parmesan", "pasta", "olive"],
    "thai": ["lemongrass", "fish sauce", "galangal", "lime"],
    "mexican": ["tortilla", "chipotle", "cumin", "avocado"],
}
COURSES = {"main": ["hearty", "dinner"], "dessert": ["sweet", "sugar"]}


def _unit(vector: np.ndarray) -> np.ndarray:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def synthetic_replay_set(*, recipes: int = 150, fusion_share: float = 0.2, seed: int = 3) -> tuple[ReplaySet, set[str]]:
    """The set, and the ids of its fusion dishes."""
    rng = np.random.default_rng(seed)
    names = list(CUISINES)
    centres = {name: _unit(rng.normal(size=DIMENSIONS)) for name in names}
    course_centres = {name: _unit(rng.normal(size=DIMENSIONS)) for name in COURSES}
    embeddings, texts, labels, ids, fusion = [], [], [], [], set()
    for i in range(recipes):
        cuisine = names[i % len(names)]
        course = "dessert" if rng.random() < 0.3 else "main"
        words = list(rng.choice(CUISINES[cuisine], size=2, replace=False))
        vector = centres[cuisine] + 0.3 * course_centres[course] + 0.35 * rng.normal(size=DIMENSIONS)
        recipe_id = f"r{i}"
        if rng.random() < fusion_share:
            other = names[(i + 1) % len(names)]
            words.append(str(rng.choice(CUISINES[other])))
            noise = 0.35 * rng.normal(size=DIMENSIONS)
            vector = centres[cuisine] + centres[other] + 0.3 * course_centres[course] + noise
            fusion.add(recipe_id)
        words.append(str(rng.choice(COURSES[course])))
        embeddings.append(_unit(vector))
        texts.append(
            RecipeText(title=f"Dish {i} with {words[0]}", ingredients=words, instructions=f"Cook the {words[-1]} dish.")
        )
        labels.append({"cuisine": {cuisine}, "course": {course}})
        ids.append(recipe_id)
    categories = [
        CategorySpec(
            slug="cuisine",
            tags=tuple(TagSpec(slug=n, name=n.title(), synonyms=(), embedding=centres[n]) for n in names),
        ),
        CategorySpec(
            slug="course",
            tags=tuple(TagSpec(slug=n, name=n.title(), synonyms=(), embedding=course_centres[n]) for n in COURSES),
        ),
    ]
    data = LabelledSet(embeddings=np.stack(embeddings), texts=texts, labels=labels)
    return ReplaySet(ids=ids, data=data, categories=categories), fusion
