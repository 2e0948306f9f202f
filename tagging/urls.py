from django.urls import path

from tagging import views

app_name = "dashboard"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("runs/<int:run_id>/", views.run_detail, name="run-detail"),
    path("runs/<int:run_id>/judge/", views.run_judge, name="run-judge"),
    path("prompts/playground/", views.prompt_playground, name="prompt-playground"),
]
