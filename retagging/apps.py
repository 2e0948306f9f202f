from django.apps import AppConfig
from django.core import checks


class RetaggingConfig(AppConfig):
    name = "retagging"
    verbose_name = "Re-tagging"

    def ready(self) -> None:
        from retagging.checks import retag_webhook_check

        checks.register(retag_webhook_check)
