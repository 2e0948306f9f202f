from django.urls import path

from feedback import views

app_name = "reviewers"

urlpatterns = [
    path("", views.reviewer_activity_page, name="activity"),
]
