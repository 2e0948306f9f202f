from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand

from tagging.models import Recipe
from tagging.services.recipes import recipe_create

DEMO_RECIPES = Path(__file__).resolve().parent.parent.parent / "data" / "demo_recipes.json"


class Command(BaseCommand):
    help = "Add the team's demo recipes (skips those already there, so it is safe to run again)."

    def handle(self, *args: Any, **options: Any) -> None:
        created = 0
        for item in json.loads(DEMO_RECIPES.read_text(encoding="utf-8")):
            if Recipe.objects.filter(source=item["source"], external_id=item["external_id"]).exists():
                continue
            recipe_create(
                title=item["title"],
                ingredients=item["ingredients"],
                instructions=item["instructions"],
                external_id=item["external_id"],
                source=item["source"],
            )
            created += 1
        self.stdout.write(self.style.SUCCESS(f"Demo recipes: {created} added."))
