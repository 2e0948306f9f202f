"""What the learned tagger reads of a recipe's words: lexical evidence for a tag, the kinds of ingredient
it names and its structure (pure functions, no database)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from autotagger.recipe_text import RecipeText

LEXICAL_WEIGHTS = {"title": 1.0, "ingredients": 0.75, "instructions": 0.4}


@lru_cache(maxsize=8192)
def phrase_pattern(phrases: tuple[str, ...]) -> re.Pattern[str] | None:
    words = [re.escape(p.lower()) for p in phrases if len(p.strip()) >= 3]
    if not words:
        return None
    # Plural forms count ("lentils", "tomatoes"), longer words do not ("minced" is not "mince").
    return re.compile(r"(?<![\w-])(?:" + "|".join(words) + r")(?:s|es)?(?![\w-])")


def lexical_evidence(name: str, synonyms: Sequence[str], fields: dict[str, str]) -> float:
    """LEXICAL_WEIGHTS of the best field that mentions the tag's name or a synonym; 0 if none does."""
    pattern = phrase_pattern(tuple(sorted({name, *synonyms})))
    if pattern is None:
        return 0.0
    return max((LEXICAL_WEIGHTS[key] for key, text in fields.items() if pattern.search(text)), default=0.0)


_WORD = re.compile(r"[\w-]+")


@dataclass(frozen=True)
class RecipeWords:
    """The words of a recipe's lexical fields as LexicalIndex looks them up: each word, and each without a
    plural "s" or "es"; per field and all together. `tokens`: each field's words as written (no ending taken
    off)."""

    by_field: dict[str, frozenset[str]]
    everywhere: frozenset[str]
    tokens: dict[str, frozenset[str]]


def lexical_words(fields: dict[str, str]) -> RecipeWords:
    by_field, tokens = {}, {}
    for key, text in fields.items():
        written = frozenset(_WORD.findall(text))
        words = set(written)
        for word in written:
            if word.endswith("s"):
                words.add(word[:-1])
                if word.endswith("es"):
                    words.add(word[:-2])
        by_field[key], tokens[key] = frozenset(words), written
    return RecipeWords(by_field=by_field, everywhere=frozenset().union(*by_field.values()), tokens=tokens)


class LexicalIndex:
    """`lexical_evidence` for many tags at once, examining only the tags whose words occur in the recipe.

    A tag is filed under the first word (a run of word characters and hyphens, as `phrase_pattern` bounds
    them) of its name and of each synonym. A match of a phrase starts a word of the text that is that first
    word, or (for a one-word phrase) that word plus "s" or "es", so looking up each word of the recipe, and
    the word without such an ending, finds every tag `lexical_evidence` could score above 0; only those are
    searched with the tag's own pattern, and only in the fields that hold one of its first words, best
    field first. The few phrases that start with another character are searched everywhere. The taxonomy's
    size then costs a set intersection per recipe, not a regex per tag and field.

    Most phrases are one word (a run of word characters and hyphens): the pattern bounds a match by characters that
    are not word characters, so such a phrase matches a field exactly when the field has the word, or it plus
    "s" or "es", as a whole word, which is a set lookup in the field's `lexical_words`. The pattern is run only
    where a phrase of several words has all its words in the field (which it needs to match there).
    """

    def __init__(self, tags: Sequence[tuple[str, Sequence[str]]]) -> None:
        """`tags`: (name, synonyms) of each tag, in the order of the evidence's columns."""
        self.size = len(tags)
        self.patterns: list[re.Pattern[str] | None] = []
        self.first_words: list[frozenset[str]] = []
        # Per tag: its one-word phrases (lower case); each with "s" and "es" (what the pattern matches of them);
        # the words of each of its other phrases.
        self.single: list[frozenset[str]] = []
        self.single_forms: list[frozenset[str]] = []
        self.several: list[tuple[tuple[str, ...], ...]] = []
        by_word: dict[str, set[int]] = {}
        always: set[int] = set()
        for j, (name, synonyms) in enumerate(tags):
            phrases = tuple(sorted({name, *synonyms}))
            self.patterns.append(phrase_pattern(phrases))
            first_words = set()
            single, several = set(), []
            for phrase in phrases:
                if len(phrase.strip()) < 3:
                    continue  # phrase_pattern leaves it out too
                lower = phrase.lower()
                if _WORD.fullmatch(lower):
                    single.add(lower)
                else:
                    several.append(tuple(_WORD.findall(lower)))
                first = _WORD.match(lower)
                if first is None:
                    always.add(j)
                else:
                    first_words.add(first.group(0))
                    by_word.setdefault(first.group(0), set()).add(j)
            self.first_words.append(frozenset(first_words))
            self.single.append(frozenset(single))
            self.single_forms.append(frozenset(form for word in single for form in (word, word + "s", word + "es")))
            self.several.append(tuple(several))
        self.by_word = {word: tuple(sorted(columns)) for word, columns in by_word.items()}
        self.words = frozenset(self.by_word)
        self.always = frozenset(always)

    def candidates(self, words: RecipeWords) -> list[int]:
        """The columns of the tags whose name or a synonym could occur in the recipe whose `words` these are
        (a superset of those that do), ascending."""
        found = set(self.always)
        for word in self.words & words.everywhere:
            found.update(self.by_word[word])
        return sorted(found)

    def evidence(self, fields: dict[str, str], words: RecipeWords | None = None) -> dict[int, float]:
        """Column -> `lexical_evidence` of that tag, for the tags with any (the others have 0). `words`:
        `lexical_words(fields)`, when the caller has them already."""
        words = lexical_words(fields) if words is None else words
        # The best field first: the first that matches decides.
        ordered = sorted(fields, key=lambda key: -LEXICAL_WEIGHTS[key])
        found = {}
        for j in self.candidates(words):
            pattern = self.patterns[j]
            if pattern is None:
                continue
            single, several = self.single[j], self.several[j]
            for key in ordered:
                present = words.by_field[key]
                if not single.isdisjoint(present) or (
                    _some_phrase_in(several, present) and pattern.search(fields[key])
                ):
                    found[j] = LEXICAL_WEIGHTS[key]
                    break
        return found

    def matches(self, column: int, fields: dict[str, str], words: RecipeWords) -> dict[str, list[str]]:
        """`lexical_matches` of the tag at `column` (`words`: `lexical_words(fields)`), with the pattern run only
        in a field where one of its phrases of several words can match: elsewhere every match is a whole word
        of the field that is a one-word phrase, or it plus "s" or "es"."""
        pattern = self.patterns[column]
        if pattern is None:
            return {}
        forms, several = self.single_forms[column], self.several[column]
        found = {}
        for key, text in fields.items():
            if _some_phrase_in(several, words.by_field[key]):
                written = sorted({m.group(0) for m in pattern.finditer(text)})
            else:
                written = sorted(forms & words.tokens[key])
            if written:
                found[key] = written
        return found

    def evidence_matrix(self, texts: Sequence[RecipeText]) -> np.ndarray:
        """(m, T) `lexical_evidence` of every tag for every recipe."""
        matrix = np.zeros((len(texts), self.size), dtype=np.float32)
        for i, text in enumerate(texts):
            for j, weight in self.evidence(text.lexical_fields()).items():
                matrix[i, j] = weight
        return matrix


def _some_phrase_in(phrases: tuple[tuple[str, ...], ...], present: frozenset[str]) -> bool:
    """Whether every word of one of `phrases` is in `present` (a field's `lexical_words`): the pattern cannot match
    a phrase of several words otherwise, since each of its words stands there whole (the last one perhaps with
    "s" or "es")."""
    return any(all(word in present for word in phrase) for phrase in phrases)


def lexical_matches(name: str, synonyms: Sequence[str], fields: dict[str, str]) -> dict[str, list[str]]:
    """The words of the tag's name or synonyms each field contains, as written there (lowercased): what
    `lexical_evidence` saw. Fields without any are left out."""
    pattern = phrase_pattern(tuple(sorted({name, *synonyms})))
    if pattern is None:
        return {}
    found = {key: sorted({m.group(0) for m in pattern.finditer(text)}) for key, text in fields.items()}
    return {key: words for key, words in found.items() if words}


# Kinds of ingredient that decide many tags (a diet is mostly which of these are absent), so the text
# model learns one weight per kind rather than one per word it happened to see.
INGREDIENT_KINDS: dict[str, tuple[str, ...]] = {
    kind: tuple(words.split())
    for kind, words in {
        "meat": "beef pork lamb mutton veal bacon ham sausage chorizo salami pancetta prosciutto mince steak "
        "ribs goat venison meat meatball pepperoni lard gelatin keema oxtail brisket chicken turkey duck "
        "goose quail liver",
        "seafood": "fish salmon tuna cod haddock anchovy anchovies sardine mackerel trout prawn shrimp crab "
        "lobster mussel clam oyster squid scallop tilapia pomfret herring seafood",
        "dairy": "milk cheese butter cream yogurt yoghurt ghee paneer curd mozzarella parmesan cheddar feta "
        "ricotta mascarpone buttermilk khoya kefir",
        "egg": "egg eggs yolk yolks",
        "sweet": "sugar honey chocolate syrup jaggery cocoa jam vanilla caramel",
        "hot": "chili chilli chile chillies jalapeno cayenne chipotle sriracha habanero",
        "grain": "flour bread pasta spaghetti macaroni penne wheat noodles maida semolina couscous barley rice oats",
        "legume": "beans lentils lentil chickpeas dal tofu peas",
    }.items()
}


# Plant milks and butters are not dairy: a vegan curry with coconut milk must not read as one with cream.
_NOT_ANIMAL = re.compile(
    r"\b(?:coconut|almond|soy|soya|oat|rice|cashew|peanut|cocoa|nut|apple)\s+(?:milk|butter|cream)\b"
)


@lru_cache(maxsize=1)
def _kind_patterns() -> tuple[re.Pattern[str], ...]:
    return tuple(
        re.compile(r"(?<![\w-])(?:" + "|".join(map(re.escape, words)) + r")(?:s|es)?(?![\w-])")
        for words in INGREDIENT_KINDS.values()
    )


def ingredient_kinds(texts: Sequence[RecipeText]) -> np.ndarray:
    """(m, len(INGREDIENT_KINDS)): for each kind, 0 when no ingredient line (nor the title) names it, else
    0.5 plus a little more for each further line that does (up to about 1 for eight lines)."""
    patterns = _kind_patterns()
    rows = []
    for t in texts:
        lines = [_NOT_ANIMAL.sub(" ", line.lower()) for line in (t.title, *t.ingredients)]
        rows.append([sum(1 for line in lines if p.search(line)) for p in patterns])
    counts = np.asarray(rows, dtype=np.float32).reshape(len(texts), len(patterns))
    return np.minimum(counts, 1.0) * 0.5 + np.log1p(counts) / 4


def dense_features(texts: Sequence[RecipeText]) -> np.ndarray:
    """The columns the text model reads beside the words: structure and ingredient kinds."""
    return np.hstack([structure(texts), ingredient_kinds(texts)])


def structure(texts: Sequence[RecipeText]) -> np.ndarray:
    """(m, 3): how long the ingredient list, the instructions and their steps are, log-scaled to about
    0..1. Quick, basic and everyday recipes are short; the words alone do not say so."""
    return np.array(
        [
            [
                np.log1p(len(t.ingredients)) / 3,
                np.log1p(len(t.instructions)) / 8,
                np.log1p(t.instructions.count("\n") + 1) / 3,
            ]
            for t in texts
        ],
        dtype=np.float32,
    ).reshape(len(texts), 3)
