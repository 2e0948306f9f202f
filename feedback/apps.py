from django.apps import AppConfig


class FeedbackConfig(AppConfig):
    name = "feedback"
    verbose_name = "Feedback"

    def ready(self) -> None:
        from feedback.services.labels import gold_labels_move
        from taxonomy.services.changes import tag_merge_handler_register

        tag_merge_handler_register(handler=gold_labels_move)
