from django.urls import path

from retagging.api.views import (
    RetagJobApplyView,
    RetagJobCancelView,
    RetagJobDetailView,
    RetagJobListView,
    RetagJobRollbackView,
)

urlpatterns = [
    path("retag-jobs", RetagJobListView.as_view(), name="api-retag-jobs"),
    path("retag-jobs/<int:job_id>", RetagJobDetailView.as_view(), name="api-retag-job"),
    path("retag-jobs/<int:job_id>/apply", RetagJobApplyView.as_view(), name="api-retag-job-apply"),
    path("retag-jobs/<int:job_id>/rollback", RetagJobRollbackView.as_view(), name="api-retag-job-rollback"),
    path("retag-jobs/<int:job_id>/cancel", RetagJobCancelView.as_view(), name="api-retag-job-cancel"),
]
