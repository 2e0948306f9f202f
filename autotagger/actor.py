"""Who is acting in this request, for records written far from the view (the taxonomy's change log is written
after commit, from whatever saved the rows).

The request is kept rather than its user: DRF authenticates a token inside the view, after this middleware
ran, and sets the user on the same request object.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.http import HttpRequest, HttpResponse

_request: ContextVar[HttpRequest | None] = ContextVar("autotagger_actor_request", default=None)
_user: ContextVar[Any] = ContextVar("autotagger_actor_user", default=None)


def actor_current() -> Any:
    """The signed-in user acting now (`acting_as`, else the current request's user), or None."""
    user = _user.get()
    if user is None:
        request = _request.get()
        user = getattr(request, "user", None) if request is not None else None
    return user if user is not None and user.is_authenticated else None


@contextmanager
def acting_as(user: Any) -> Iterator[None]:
    """Attribute what happens inside to `user` (a management command, a task acting for someone)."""
    token = _user.set(user)
    try:
        yield
    finally:
        _user.reset(token)


class ActorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _request.set(request)
        try:
            return self.get_response(request)
        finally:
            _request.reset(token)
