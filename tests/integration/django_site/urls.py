from django.urls import path

from tests.integration.django_site import views

urlpatterns = [
    path("json", views.json_view),
    path("form", views.form_view),
    path("upload", views.upload_view),
    path("stream/<str:token>", views.stream_view),
    path("release/<str:token>", views.release_view),
    path("echo", views.echo_view),
    path("redirect", views.redirect_view),
    path("cookie/set", views.set_cookie_view),
    path("cookie/get", views.get_cookie_view),
    path("café", views.cafe_view),
    path("csrf/token", views.csrf_token_view),
    path("csrf/protected", views.csrf_protected_view),
]
