import os
from typing import Any

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autotagger.settings.development")

app = Celery("autotagger")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def _settings_checked(**kwargs: Any) -> None:
    from autotagger.checks import checks_enforce

    checks_enforce()
