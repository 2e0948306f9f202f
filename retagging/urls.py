from django.urls import URLPattern

app_name = "retagging"

urlpatterns: list[URLPattern] = []
