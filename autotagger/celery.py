import os
from typing import Any

from celery import Celery
from celery.signals import worker_init

# A server or worker started without saying otherwise is a deployment: production settings, which refuse to
# start without their secrets. `make run` (Procfile) and the tests name their settings module.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autotagger.settings.production")

app = Celery("autotagger")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def _settings_checked(**kwargs: Any) -> None:
    from autotagger.checks import checks_enforce

    checks_enforce()
