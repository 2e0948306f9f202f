from django.apps import AppConfig


class TokensConfig(AppConfig):
    """API tokens: django-rest-knox's model (a SHA-512 digest, never the key, and an expiry), issued by a
    service, a management command and admin, where staff revoke them."""

    name = "autotagger.tokens"
    label = "api_tokens"
    verbose_name = "API tokens"

    def ready(self) -> None:
        # drf-spectacular describes the scheme of the authentication class in the OpenAPI document.
        from autotagger.tokens import schema  # noqa: F401
