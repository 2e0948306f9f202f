from django.urls import path

from retagging import views

app_name = "retagging"

urlpatterns = [
    path("jobs/", views.job_list, name="list"),
    path("jobs/new/", views.job_new, name="new"),
    path("jobs/<int:job_id>/", views.job_detail, name="detail"),
    path("jobs/<int:job_id>/progress.json", views.job_progress_json, name="progress"),
    path("jobs/<int:job_id>/<str:action>/", views.job_action, name="action"),
]
