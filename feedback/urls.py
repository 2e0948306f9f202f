from django.urls import path

from feedback import views

app_name = "evaluations"

urlpatterns = [
    path("", views.evaluation_list, name="list"),
    path("compare/", views.evaluation_compare, name="compare"),
    path("<int:run_id>/", views.evaluation_detail, name="detail"),
]
