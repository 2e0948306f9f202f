from django.apps import AppConfig
from django.core import checks


class PromptsConfig(AppConfig):
    name = "prompts"
    verbose_name = "Prompts"

    def ready(self) -> None:
        from prompts.checks import llm_settings_check, llm_sources_priced_check

        checks.register(llm_settings_check)
        checks.register(llm_sources_priced_check, checks.Tags.database)
