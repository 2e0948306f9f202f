from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper
from tqdm import tqdm

from feedback.services.imports import ImportConfigError, ImportReport, recipes_import

MAX_ERRORS_SHOWN = 50


class _BarOutput:
    """tqdm redraws its bar with a bare "\\r"; OutputWrapper would end each of those writes with a newline."""

    def __init__(self, out: OutputWrapper) -> None:
        self._out = out

    def write(self, text: str) -> None:
        self._out.write(text, style_func=lambda s: s, ending="")

    def flush(self) -> None:
        self._out.flush()

    def isatty(self) -> bool:
        return self._out.isatty()


def _count_lines(path: Path) -> int:
    count = 0
    last = b"\n"
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def _mapping_load(name: str | None) -> Any:
    if name is None:
        return None
    path = Path(name)
    if not path.is_file():
        raise CommandError(f"The --map file {name} does not exist.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise CommandError(f"The --map file {name} is not UTF-8 text.") from exc
    except json.JSONDecodeError as exc:
        raise CommandError(
            f"The --map file {name} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})."
        ) from exc


class Command(BaseCommand):
    help = (
        "Import recipes from a JSON-lines dataset (one {id, title, ingredients, instructions, tags} object a line). "
        "Recipes are matched on (source, id), so running it again updates them; with --labeled their tags become "
        "gold labels. Bad lines are reported and skipped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="The .jsonl file.")
        parser.add_argument("--labeled", action="store_true", help="Store the recipes' tags as their gold labels.")
        parser.add_argument(
            "--create-taxonomy",
            action="store_true",
            help="Create the categories and tags the taxonomy lacks (otherwise they are reported as unmapped).",
        )
        parser.add_argument(
            "--map",
            dest="mapping",
            metavar="FILE.json",
            help='{"dataset category": {"dataset tag name": "tag_slug" or "category_slug/tag_slug"}}.',
        )
        parser.add_argument("--source", help="The recipes' source name; the file name without extension by default.")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["path"])
        if not path.is_file():
            raise CommandError(f"The file {path} does not exist.")
        mapping = _mapping_load(options["mapping"])
        bar = tqdm(total=_count_lines(path), unit=" lines", file=_BarOutput(self.stderr), disable=None)
        try:
            with path.open("rb") as lines:
                report = recipes_import(
                    lines=lines,
                    source=options["source"] or path.stem,
                    labeled=options["labeled"],
                    create_taxonomy=options["create_taxonomy"],
                    mapping=mapping,
                    progress=bar.update,
                )
        except ImportConfigError as exc:
            raise CommandError(exc.message) from exc
        finally:
            bar.close()
        self._report(report)

    def _report(self, report: ImportReport) -> None:
        self.stdout.write(
            self.style.SUCCESS(
                f"{report.created} recipes created, {report.updated} updated, {report.unchanged} unchanged; "
                f"{report.labels} labels; {report.categories_created} categories and {report.tags_created} tags "
                "created."
            )
        )
        if report.errors:
            self.stdout.write(self.style.WARNING(f"{len(report.errors)} bad lines were skipped:"))
            for line, message in report.errors[:MAX_ERRORS_SHOWN]:
                self.stdout.write(f"line {line}: {message}")
            if len(report.errors) > MAX_ERRORS_SHOWN:
                self.stdout.write(f"... and {len(report.errors) - MAX_ERRORS_SHOWN} more")
        if report.unmapped:
            self.stdout.write(
                self.style.WARNING(
                    "Tags not in the taxonomy were not stored (add them, or use --map or --create-taxonomy):"
                )
            )
            for category, counts in sorted(report.unmapped.items()):
                tags = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
                self.stdout.write(f"{category}: " + ", ".join(f"{name} ({count})" for name, count in tags))
