"""Panels that apps above tagging add to the dashboard: the dashboard renders what is registered here and never
imports those apps (layers: a higher app registers itself from its AppConfig.ready)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest


@dataclass(frozen=True)
class DashboardPanel:
    # A template rendered with `panel` set to what `context` returned for the request.
    template_name: str
    # None when the panel has nothing to show to this user (no permission, nothing to report).
    context: Callable[[HttpRequest], dict[str, Any] | None]


@dataclass(frozen=True)
class RenderedPanel:
    template_name: str
    context: dict[str, Any]


_PANELS: dict[str, DashboardPanel] = {}


def dashboard_panel_register(*, name: str, template_name: str, context: Callable[[HttpRequest], Any]) -> None:
    """Show a panel on the dashboard under the recipe form; registering a name again replaces its panel."""
    _PANELS[name] = DashboardPanel(template_name=template_name, context=context)


def dashboard_panels(*, request: HttpRequest) -> list[RenderedPanel]:
    """The panels with something to show to the request's user, in the order they were registered."""
    rendered = []
    for panel in _PANELS.values():
        context = panel.context(request)
        if context is not None:
            rendered.append(RenderedPanel(template_name=panel.template_name, context=context))
    return rendered
