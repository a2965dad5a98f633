"""The same URLs as `tests/integration/flask_site.py`, the Django way."""

from __future__ import annotations

import hashlib
import threading

from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST, require_safe

_gates: dict[str, threading.Event] = {}
_gates_lock = threading.Lock()


def _gate(token: str) -> threading.Event:
    with _gates_lock:
        return _gates.setdefault(token, threading.Event())


@require_safe
def json_view(request):
    return JsonResponse({
        "framework": "django",
        "args": {key: request.GET.getlist(key) for key in request.GET},
        "query_string": request.META["QUERY_STRING"],
        "path": request.path,
    })


@csrf_exempt
@require_POST
def form_view(request):
    return JsonResponse({"form": {key: request.POST.getlist(key) for key in request.POST}})


@csrf_exempt
@require_POST
def upload_view(request):
    upload = request.FILES["file"]
    data = upload.read()
    return JsonResponse({
        "filename": upload.name,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "fields": {key: request.POST[key] for key in request.POST},
    })


@require_GET
def stream_view(request, token):
    gate = _gate(token)

    def generate():
        yield f"first chunk of {request.path}\n"
        if not gate.wait(10):
            yield "gate timed out\n"
            return
        for i in range(1000):
            yield f"line {i}\n"
        yield "end\n"

    return StreamingHttpResponse(generate(), content_type="text/plain")


@csrf_exempt
@require_POST
def release_view(request, token):
    _gate(token).set()
    return HttpResponse("released\n")


@csrf_exempt
def echo_view(request):
    data = request.body
    response = HttpResponse(data, content_type="application/octet-stream")
    response["X-Sha256"] = hashlib.sha256(data).hexdigest()
    return response


def redirect_view(request):
    return redirect("/json?via=redirect")


def set_cookie_view(request):
    response = JsonResponse({"ok": True})
    response.set_cookie("flavour", "oatmeal", path="/")
    response.set_cookie("session", "s3cr3t", httponly=True, path="/")
    return response


def get_cookie_view(request):
    return JsonResponse({"cookies": dict(request.COOKIES)})


def cafe_view(request):
    return HttpResponse("un café, s'il vous plaît\n", content_type="text/plain; charset=utf-8")


def csrf_token_view(request):
    return JsonResponse({"token": get_token(request)})


@require_POST
def csrf_protected_view(request):
    return JsonResponse({"accepted": request.POST.get("item", "")})
