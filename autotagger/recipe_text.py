"""What the taggers, the prompts and the evaluation read of a recipe: its title, ingredients and method."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class RecipeText:
    title: str
    ingredients: Sequence[str]
    instructions: str

    def for_embedding(self) -> str:
        ingredients = "; ".join(i.strip() for i in self.ingredients if i.strip())
        parts = [self.title.strip() + "."]
        if ingredients:
            parts.append(f"Ingredients: {ingredients}.")
        if self.instructions.strip():
            parts.append(self.instructions.strip())
        return " ".join(parts)

    def lexical_fields(self) -> dict[str, str]:
        return {
            "title": self.title.lower(),
            "ingredients": "\n".join(self.ingredients).lower(),
            "instructions": self.instructions.lower(),
        }
