"""Reading a JSON file uploaded through an admin form, with errors a person can act on."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile


def json_upload_load(upload: UploadedFile, *, label: str = "The file") -> Any:
    """The parsed JSON of `upload`; a ValidationError naming the line and column when it is not."""
    try:
        return json.loads(upload.read().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValidationError(f"{label} is not UTF-8 text.", code="encoding") from exc
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"{label} is not valid JSON (line %(line)d, column %(column)d: %(reason)s).",
            params={"line": exc.lineno, "column": exc.colno, "reason": exc.msg},
            code="invalid_json",
        ) from exc
