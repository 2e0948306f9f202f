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
    are neither, so such a phrase matches a field exactly when the field has the word, or it plus "s" or "es",
    as a whole word: a set lookup in the field's `lexical_words`, done for all the tags at once by the fields'
    words. A phrase of several words can match only where all its words are (each stands whole, the last perhaps
    with "s" or "es"): the pattern is run only there.
    """

    def __init__(self, tags: Sequence[tuple[str, Sequence[str]]]) -> None:
        """`tags`: (name, synonyms) of each tag, in the order of the evidence's columns."""
        self.size = len(tags)
        self.patterns: list[re.Pattern[str] | None] = []
        # Per tag: each of its one-word phrases (lower case) with "s" and "es", what the pattern matches of them;
        # the words of each of its other phrases.
        self.single_forms: list[frozenset[str]] = []
        self.several: list[tuple[frozenset[str], ...]] = []
        by_word: dict[str, set[int]] = {}
        always: set[int] = set()
        # The tags by each one-word phrase; the phrases of several words (tag, words) by their first word; the
        # tags with a phrase that has no word at all (searched everywhere).
        single_index: dict[str, set[int]] = {}
        several_index: dict[str, list[tuple[int, frozenset[str], re.Pattern[str]]]] = {}
        wordless: dict[int, re.Pattern[str]] = {}
        for j, (name, synonyms) in enumerate(tags):
            phrases = tuple(sorted({name, *synonyms}))
            pattern = phrase_pattern(phrases)
            self.patterns.append(pattern)
            forms: set[str] = set()
            several: list[frozenset[str]] = []
            for phrase in phrases:
                if len(phrase.strip()) < 3:
                    continue  # phrase_pattern leaves it out too
                lower = phrase.lower()
                if _WORD.fullmatch(lower):
                    forms.update((lower, lower + "s", lower + "es"))
                    single_index.setdefault(lower, set()).add(j)
                else:
                    phrase_words = _WORD.findall(lower)
                    several.append(frozenset(phrase_words))
                    assert pattern is not None  # the tag has this phrase
                    if phrase_words:
                        several_index.setdefault(phrase_words[0], []).append((j, frozenset(phrase_words), pattern))
                    else:
                        wordless[j] = pattern
                first = _WORD.match(lower)
                if first is None:
                    always.add(j)
                else:
                    by_word.setdefault(first.group(0), set()).add(j)
            self.single_forms.append(frozenset(forms))
            self.several.append(tuple(several))
        self.by_word = {word: tuple(sorted(columns)) for word, columns in by_word.items()}
        self.words = frozenset(self.by_word)
        self.always = frozenset(always)
        self.single_index = {word: tuple(sorted(columns)) for word, columns in single_index.items()}
        self.single_words = frozenset(self.single_index)
        self.several_index = {word: tuple(phrases) for word, phrases in several_index.items()}
        self.several_words = frozenset(self.several_index)
        self.wordless = tuple(sorted(wordless.items()))

    def candidates(self, words: RecipeWords) -> list[int]:
        """The columns of the tags whose name or a synonym could occur in the recipe whose `words` these are
        (a superset of those that do), ascending."""
        found = set(self.always)
        for word in self.words & words.everywhere:
            found.update(self.by_word[word])
        return sorted(found)

    def evidence(self, fields: dict[str, str], words: RecipeWords | None = None) -> dict[int, float]:
        """Column -> `lexical_evidence` of that tag, for the tags with any (the others have 0), by column.
        `words`: `lexical_words(fields)`, when the caller has them already."""
        words = lexical_words(fields) if words is None else words
        found: dict[int, float] = {}
        # The best field first: the first that matches decides.
        for key in sorted(fields, key=lambda key: -LEXICAL_WEIGHTS[key]):
            present, weight = words.by_field[key], LEXICAL_WEIGHTS[key]
            for word in self.single_words & present:
                for j in self.single_index[word]:
                    found.setdefault(j, weight)
            for word in self.several_words & present:
                for j, phrase, pattern in self.several_index[word]:
                    if j not in found and phrase <= present and pattern.search(fields[key]):
                        found[j] = weight
            for j, pattern in self.wordless:
                if j not in found and pattern.search(fields[key]):
                    found[j] = weight
        return dict(sorted(found.items()))

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
            present = words.by_field[key]
            if any(phrase <= present for phrase in several):
                written = sorted({m.group(0) for m in pattern.finditer(text)})
            else:
                written = sorted(forms & words.tokens[key])
            if written:
                found[key] = written
        return found

    def evidence_matrix(
        self, texts: Sequence[RecipeText], read: Sequence[tuple[dict[str, str], RecipeWords]] | None = None
    ) -> np.ndarray:
        """(m, T) `lexical_evidence` of every tag for every recipe. `read`: each recipe's `lexical_fields()` and
        their `lexical_words`, when the caller has them already (one reading serves every category)."""
        if read is None:
            read = [(fields, lexical_words(fields)) for fields in (text.lexical_fields() for text in texts)]
        matrix = np.zeros((len(texts), self.size), dtype=np.float32)
        for i, (fields, words) in enumerate(read):
            found = self.evidence(fields, words)
            if found:
                matrix[i, list(found)] = list(found.values())
        return matrix


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
