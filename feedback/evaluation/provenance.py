"""What produced an evaluation: the code's version."""

from __future__ import annotations

import logging
import subprocess
import tomllib
from pathlib import Path

from django.conf import settings

logger = logging.getLogger(__name__)

GIT_TIMEOUT_SECONDS = 5
PYPROJECT = Path(settings.BASE_DIR) / "pyproject.toml"


def code_version() -> str:
    """The commit checked out (`git rev-parse --short HEAD`); the package version where there is no Git
    checkout (the Docker image has no .git)."""
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        completed = None
    if completed is not None and completed.returncode == 0 and completed.stdout.strip():
        return completed.stdout.strip()[:40]
    try:
        return str(tomllib.loads(PYPROJECT.read_text())["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        logger.exception("Unable to read the package version from %s", PYPROJECT)
        return "unknown"
