"""API tokens in admin: staff see who holds which (by the key's first characters, never the key or its
digest), when each expires, and revoke them; issuing one shows its key once, on the page that answers the
form, and stores it nowhere (not in a message, which may sit in a cookie)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from knox.models import AuthToken

from autotagger.tokens.services import MAX_TOKEN_DAYS, api_token_create, api_tokens_revoke

admin.site.unregister(AuthToken)


class TokenIssueForm(forms.ModelForm):  # type: ignore[type-arg]
    days = forms.IntegerField(
        min_value=1,
        max_value=MAX_TOKEN_DAYS,
        help_text="How long the token works. The key is shown once, on the next page.",
    )

    class Meta:
        model = AuthToken
        fields = ("user",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["days"].initial = settings.API_TOKEN_TTL_DAYS


@admin.register(AuthToken)
class AuthTokenAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("token_key_display", "user", "created", "expiry", "state")
    list_filter = ("created", "expiry")
    search_fields = ("token_key", "user__username")
    ordering = ("-created", "token_key")
    actions = ("revoke",)
    fields = ("token_key", "user", "created", "expiry")
    readonly_fields = ("token_key", "user", "created", "expiry")

    @admin.display(description="Key starts with")
    def token_key_display(self, obj: AuthToken) -> str:
        return f"{obj.token_key}..."

    @admin.display(description="State")
    def state(self, obj: AuthToken) -> str:
        return "expired" if obj.expiry is not None and obj.expiry <= timezone.now() else "active"

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = TokenIssueForm
            kwargs["fields"] = ("user", "days")
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("user", "days") if obj is None else self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return () if obj is None else self.readonly_fields

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a token is issued or revoked, never edited

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "user":
            users = get_user_model().objects.filter(is_active=True).order_by("username")
            if not request.user.is_superuser:
                # A token acts as its user through the API: staff may not mint one for staff or a superuser.
                users = users.filter(is_staff=False, is_superuser=False)
            kwargs["queryset"] = users
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: AuthToken, form: Any, change: bool) -> None:
        token, key = api_token_create(user=form.cleaned_data["user"], days=form.cleaned_data["days"])
        # The admin logs and links the object it saved: make it the token just issued.
        obj.__dict__.update({f.attname: getattr(token, f.attname) for f in AuthToken._meta.concrete_fields})
        obj._state.adding = False
        request._issued_token_key = key  # type: ignore[attr-defined]

    def response_add(self, request: HttpRequest, obj: AuthToken, post_url_continue: str | None = None) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": "API token issued",
            "opts": self.opts,
            "token": obj,
            "key": getattr(request, "_issued_token_key", ""),
        }
        # Admin views are never_cache: the page with the key is not kept by the browser or a proxy.
        return TemplateResponse(request, "tokens/issued.html", context)

    @admin.action(description="Revoke the selected tokens", permissions=["delete"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[AuthToken]) -> None:
        revoked = api_tokens_revoke(tokens=queryset)
        self.message_user(request, f"Revoked {revoked} token(s); they no longer work.", messages.SUCCESS)
