from django.apps import AppConfig


class RetaggingConfig(AppConfig):
    name = "retagging"
    verbose_name = "Re-tagging"
