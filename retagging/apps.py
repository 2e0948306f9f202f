from django.apps import AppConfig
from django.core import checks


class RetaggingConfig(AppConfig):
    name = "retagging"
    verbose_name = "Re-tagging"

    def ready(self) -> None:
        from retagging.checks import retag_webhook_check
        from retagging.dashboard import TEMPLATE_NAME, retag_dashboard_context
        from tagging.dashboard import dashboard_panel_register

        checks.register(retag_webhook_check)
        dashboard_panel_register(name="retagging", template_name=TEMPLATE_NAME, context=retag_dashboard_context)
