"""The error an evaluation that cannot start raises."""

from __future__ import annotations

from autotagger.errors import DomainError


class EvaluationError(DomainError):
    """An evaluation that cannot start (bad options, a missing file); nothing was stored."""

    code = "invalid_evaluation"
