from django.urls import path

from notes import views

urlpatterns = [
    path("", views.home, name="home"),
    path("notes/", views.note_list, name="note-list"),
    path("notes/new", views.note_create, name="note-create"),
    path("healthz", views.healthz, name="healthz"),
    path("version", views.version, name="version"),
    path("served-by", views.served_by, name="served-by"),
]
