from django.apps import AppConfig


class TaggingConfig(AppConfig):
    name = "tagging"
    verbose_name = "Tagging"

    def ready(self) -> None:
        from django.core import checks

        from tagging.checks import lost_runs_settings_check, run_time_limits_check
        from tagging.services.runs import tag_assignments_move
        from taxonomy.services.changes import tag_merge_handler_register

        tag_merge_handler_register(handler=tag_assignments_move)
        checks.register(run_time_limits_check)
        checks.register(lost_runs_settings_check)
