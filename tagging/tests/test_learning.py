"""The learned tagger's own model (tagging/learning.py), without the database: what it reads of a recipe
and how it combines its signals."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from autotagger.recipe_text import RecipeText
from tagging import features as text_features
from tagging import learning, stacking
from tagging.learning import CategorySpec, LabelledSet, TagSpec, TextClassifier

# Both kinds are written with the same words, as many of them: only the recipe's structure (one line of
# ingredients and one paragraph of method, or a list and numbered steps) tells the quick ones apart.
WORDS = ["onion", "garlic", "tomato", "rice", "beans", "pepper", "oil", "salt", "stock", "herbs"]


def _recipe(rng: np.random.Generator, *, quick: bool) -> RecipeText:
    items = [str(w) for w in rng.choice(WORDS, size=6)]
    steps = [f"Cook the {rng.choice(WORDS)} with the {rng.choice(WORDS)}." for _ in range(6)]
    return RecipeText(
        title=f"{rng.choice(WORDS).title()} dish",
        ingredients=["; ".join(items)] if quick else items,
        instructions=" ".join(steps) if quick else "\n".join(steps),
    )


@pytest.fixture
def recipes() -> tuple[list[RecipeText], np.ndarray]:
    rng = np.random.default_rng(7)
    quick = rng.random(120) < 0.5
    return [_recipe(rng, quick=bool(q)) for q in quick], quick.astype(np.float32)


def _accuracy(probabilities: np.ndarray, truth: np.ndarray) -> float:
    return float(((probabilities[:, 0] >= 0.5) == (truth == 1)).mean())


def test_structure_grows_with_the_ingredient_list_and_the_method() -> None:
    short = RecipeText(title="Toast", ingredients=["bread"], instructions="Toast it.")
    long = RecipeText(
        title="Cassoulet",
        ingredients=["beans", "duck", "sausage", "pork belly", "garlic", "thyme", "stock", "breadcrumbs"],
        instructions="\n".join(["Soak the beans.", "Brown the meat.", "Layer everything.", "Bake for hours."] * 3),
    )

    features = text_features.structure([short, long])

    assert features.shape == (2, 3)
    assert (features[1] > features[0]).all()
    assert (features >= 0).all()
    assert (features <= 1.5).all()


def test_the_text_model_learns_a_tag_that_only_the_recipes_structure_reveals(
    recipes: tuple[list[RecipeText], np.ndarray],
) -> None:
    texts, quick = recipes
    documents = [t.for_embedding() for t in texts]
    labels = {"speed": quick[:, None]}

    with_structure = TextClassifier().fit(documents, labels, text_features.structure(texts))["speed"]
    words_only = TextClassifier().fit(documents, labels)["speed"]

    assert _accuracy(with_structure, quick) > 0.95
    assert _accuracy(words_only, quick) < 0.75


def test_a_text_model_fitted_with_structure_needs_it_to_predict(recipes: tuple[list[RecipeText], np.ndarray]) -> None:
    texts, quick = recipes
    model = TextClassifier()
    model.fit([t.for_embedding() for t in texts], {"speed": quick[:, None]}, text_features.structure(texts))

    with pytest.raises(ValueError, match="dense features"):
        model.probabilities(["Rice dish. Ingredients: rice."])


def test_the_learned_tagger_tags_a_new_short_recipe_quick(recipes: tuple[list[RecipeText], np.ndarray]) -> None:
    texts, quick = recipes
    rng = np.random.default_rng(11)
    # Embeddings that know nothing of speed: the structure has to carry it.
    embeddings = rng.normal(size=(len(texts), 16)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    tag_vectors = np.eye(16, dtype=np.float32)[:2]
    speed = CategorySpec(
        slug="speed",
        tags=(
            TagSpec(slug="quick", name="Quick", synonyms=(), embedding=tag_vectors[0]),
            TagSpec(slug="slow", name="Slow cooked", synonyms=(), embedding=tag_vectors[1]),
        ),
    )
    labels = [{"speed": {"quick" if q else "slow"}} for q in quick]
    model = learning.fit(data=LabelledSet(embeddings=embeddings, texts=texts, labels=labels), categories=[speed], k=1)
    new = [_recipe(rng, quick=i % 2 == 0) for i in range(20)]
    new_embeddings = rng.normal(size=(len(new), 16)).astype(np.float32)
    new_embeddings /= np.linalg.norm(new_embeddings, axis=1, keepdims=True)

    predicted = model.predict(embeddings=new_embeddings, texts=new, category_slugs=["speed"], k=1)

    expected = [["quick"] if i % 2 == 0 else ["slow"] for i in range(len(new))]
    assert [[tag for tag, _ in p["speed"]] for p in predicted] == expected
    assert model.categories["speed"].signals in {*stacking.SIGNAL_GROUPS, "average"}


def test_ingredient_kinds_name_what_a_recipe_is_made_of() -> None:
    kinds = list(text_features.INGREDIENT_KINDS)
    carbonara = RecipeText(
        title="Carbonara", ingredients=["200 g spaghetti", "100 g pancetta", "3 eggs", "Parmesan"], instructions=""
    )
    vegan_curry = RecipeText(
        title="Aubergine curry",
        ingredients=["1 can coconut milk", "2 eggplants", "2 red chillies", "1 butternut squash", "peanut butter"],
        instructions="",
    )

    features = text_features.ingredient_kinds([carbonara, vegan_curry])

    assert features.shape == (2, len(kinds))
    made_of = [{kind for kind, value in zip(kinds, row, strict=True) if value > 0} for row in features]
    assert made_of == [{"meat", "egg", "dairy", "grain"}, {"hot"}]


# Meat-free recipes and recipes with one of a few meats, written with the same vegetables.
VEGETABLES = ["onion", "carrot", "celery", "potato", "leek", "cabbage", "spinach", "courgette"]


def _stew(rng: np.random.Generator, meat: str | None) -> RecipeText:
    items = [f"1 {v}" for v in rng.choice(VEGETABLES, size=4, replace=False)]
    if meat:
        items.insert(int(rng.integers(0, 4)), f"500 g {meat}")
    return RecipeText(title="Winter stew", ingredients=items, instructions="Simmer everything for an hour.")


def test_the_text_model_carries_a_diet_learned_on_some_meats_to_meats_it_never_saw() -> None:
    rng = np.random.default_rng(5)
    meat_free = rng.random(120) < 0.5
    training = [_stew(rng, None if free else str(rng.choice(["beef", "chicken", "lamb"]))) for free in meat_free]
    labels = {"diet": meat_free.astype(np.float32)[:, None]}
    unseen = [_stew(rng, str(rng.choice(["pork", "bacon", "venison"]))) for _ in range(20)]
    documents = [t.for_embedding() for t in training]

    with_kinds = TextClassifier()
    with_kinds.fit(documents, labels, text_features.dense_features(training))
    words_only = TextClassifier()
    words_only.fit(documents, labels)

    vegetarian_with_kinds = with_kinds.probabilities(
        [t.for_embedding() for t in unseen], text_features.dense_features(unseen)
    )["diet"][:, 0]
    vegetarian_words_only = words_only.probabilities([t.for_embedding() for t in unseen])["diet"][:, 0]
    assert (vegetarian_with_kinds < 0.5).all()
    assert (vegetarian_words_only >= 0.5).mean() > 0.5


def test_the_text_models_coefficient_matrix_gives_what_liblinears_predict_proba_gives(
    recipes: tuple[list[RecipeText], np.ndarray],
) -> None:
    texts, quick = recipes
    rng = np.random.default_rng(3)
    # A learned column, a noisy one, one no recipe has and one every recipe has (constants, no regression).
    labels = np.stack(
        [quick, (rng.random(len(texts)) < 0.3).astype(np.float32), np.zeros(len(texts)), np.ones(len(texts))], axis=1
    ).astype(np.float32)
    model = TextClassifier()
    model.fit([t.for_embedding() for t in texts], {"speed": labels}, text_features.dense_features(texts))
    new = [_recipe(rng, quick=i % 2 == 0) for i in range(30)]
    x = model._join(model.vectorizer.transform([t.for_embedding() for t in new]), text_features.dense_features(new))

    probabilities = model.probabilities([t.for_embedding() for t in new], text_features.dense_features(new))["speed"]

    columns = model.models["speed"]
    assert [isinstance(c, float) for c in columns] == [False, False, True, True]
    expected = np.stack(
        [c.predict_proba(x)[:, 1] if not isinstance(c, float) else np.full(len(new), c) for c in columns], axis=1
    )
    np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-6)
    assert probabilities[:, 0].min() < 0.2
    assert probabilities[:, 0].max() > 0.8


def test_a_pickled_text_model_predicts_the_same_and_leaves_its_derived_matrices_behind(
    recipes: tuple[list[RecipeText], np.ndarray],
) -> None:
    import pickle

    texts, quick = recipes
    model = TextClassifier()
    documents = [t.for_embedding() for t in texts]
    model.fit(documents, {"speed": quick[:, None]}, text_features.dense_features(texts))
    before = model.probabilities(documents, text_features.dense_features(texts))["speed"]

    blob = pickle.dumps(model)
    restored = pickle.loads(blob)

    assert b"LinearColumns" not in blob
    after = restored.probabilities(documents, text_features.dense_features(texts))["speed"]
    np.testing.assert_array_equal(after, before)


def test_the_fit_runs_on_one_blas_thread_whatever_the_process_allows(
    recipes: tuple[list[RecipeText], np.ndarray],
) -> None:
    texts, quick = recipes
    rng = np.random.default_rng(3)
    embeddings = rng.normal(size=(len(texts), 16)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    speed = CategorySpec(
        slug="speed",
        tags=(
            TagSpec(slug="quick", name="Quick", synonyms=(), embedding=np.eye(16, dtype=np.float32)[0]),
            TagSpec(slug="slow", name="Slow cooked", synonyms=(), embedding=np.eye(16, dtype=np.float32)[1]),
        ),
    )
    labels = [{"speed": {"quick" if q else "slow"}} for q in quick]
    threads_while_fitting: list[int] = []

    def progress(_: str) -> None:
        threads_while_fitting.extend(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")

    with threadpool_limits(limits=2, user_api="blas"):
        learning.fit(
            data=LabelledSet(embeddings=embeddings, texts=texts, labels=labels),
            categories=[speed],
            k=1,
            progress=progress,
        )
        threads_after = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    assert threads_while_fitting
    assert set(threads_while_fitting) == {1}
    assert set(threads_after) == {2}
