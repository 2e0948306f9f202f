from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from feedback.training import tagger_fit


class Command(BaseCommand):
    help = "Fit the similarity tagger on every gold label now (the worker also refits after labels change)."

    def handle(self, *args: Any, **options: Any) -> None:
        state = tagger_fit()
        if state is None:
            self.stdout.write("No gold labels: the tagger stays zero-shot.")
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Tagger state {state.pk}: {state.fitted_on['labelled_recipes']} labelled recipes, "
                f"{len(state.parameters)} categories learned in {state.duration_seconds:.1f}s."
            )
        )
        for slug, parameters in state.parameters.items():
            self.stdout.write(
                f"  {slug:20} {parameters['labelled']:6} labelled  signals {parameters['signals']:16} "
                f"threshold {parameters['threshold']:.3f}  cross-validated F1 {parameters['fit_f1']:.3f}"
            )
