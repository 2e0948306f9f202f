from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from taxonomy.selectors import taxonomy_export


class Command(BaseCommand):
    help = "Write the whole taxonomy as JSON (to a file, or to standard output)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", "-o", help="File to write; standard output when omitted.")

    def handle(self, *args: Any, **options: Any) -> None:
        text = json.dumps(taxonomy_export(), indent=2, ensure_ascii=False) + "\n"
        if options["output"]:
            Path(options["output"]).write_text(text, encoding="utf-8")
            self.stderr.write(f"Wrote {options['output']}")
        else:
            self.stdout.write(text, ending="")
