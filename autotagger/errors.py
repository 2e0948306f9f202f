"""The base of every error a service raises for its caller to report: the API turns one into
`{"error": {"code", "message", "details"}}` with `status`, a page into a message, a command into its output."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A request that cannot be served, and why; `code` and `status` say how the API reports it."""

    code = "invalid"
    status = 400

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
