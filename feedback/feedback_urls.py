from django.urls import path

from feedback.feedback_views import feedback_overview

urlpatterns = [
    path("", feedback_overview, name="feedback"),
]
