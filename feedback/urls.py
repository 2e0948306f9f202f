from django.urls import path

from feedback import views

app_name = "evaluations"

urlpatterns = [
    path("", views.evaluation_list, name="list"),
    path("compare/", views.evaluation_compare, name="compare"),
    path("<int:run_id>/", views.evaluation_detail, name="detail"),
    path("jobs/<int:job_id>/", views.evaluation_job_detail, name="job"),
    path("jobs/<int:job_id>/status", views.evaluation_job_status, name="job_status"),
    path("drafts/", views.draft_evaluation_new, name="draft_new"),
    path("drafts/<int:job_id>/", views.draft_evaluation_detail, name="draft"),
]
