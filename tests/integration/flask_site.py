"""A real Flask app for the framework tests; `test_frameworks.py` serves it and the Django
project in `django_site/` at the same URLs and runs one set of tests against both."""

from __future__ import annotations

import hashlib
import threading

from flask import Flask, Response, jsonify, redirect, request, stream_with_context

app = Flask(__name__)

# A streaming response waits at a gate after its first chunk, until the client opens it with
# another request: seeing the first chunk before the gate opens proves the body is streamed.
_gates: dict[str, threading.Event] = {}
_gates_lock = threading.Lock()


def _gate(token: str) -> threading.Event:
    with _gates_lock:
        return _gates.setdefault(token, threading.Event())


@app.get("/json")
def json_view():
    return jsonify(
        framework="flask",
        args=request.args.to_dict(flat=False),
        query_string=request.query_string.decode("latin-1"),
        path=request.path,
    )


@app.post("/form")
def form_view():
    return jsonify(form=request.form.to_dict(flat=False))


@app.post("/upload")
def upload_view():
    upload = request.files["file"]
    data = upload.read()
    return jsonify(
        filename=upload.filename,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        fields=request.form.to_dict(),
    )


@app.get("/stream/<token>")
def stream_view(token: str):
    gate = _gate(token)

    @stream_with_context
    def generate():
        yield f"first chunk of {request.path}\n"  # the request context is alive in the generator
        if not gate.wait(10):
            yield "gate timed out\n"
            return
        for i in range(1000):
            yield f"line {i}\n"
        yield "end\n"

    return Response(generate(), mimetype="text/plain")


@app.post("/release/<token>")
def release_view(token: str):
    _gate(token).set()
    return "released\n"


@app.route("/echo", methods=["POST", "PUT"])
def echo_view():
    data = request.get_data()
    return Response(data, mimetype="application/octet-stream",
                    headers={"X-Sha256": hashlib.sha256(data).hexdigest()})


@app.get("/redirect")
def redirect_view():
    return redirect("/json?via=redirect")


@app.get("/cookie/set")
def set_cookie_view():
    response = jsonify(ok=True)
    response.set_cookie("flavour", "oatmeal", path="/")
    response.set_cookie("session", "s3cr3t", httponly=True, path="/")
    return response


@app.get("/cookie/get")
def get_cookie_view():
    return jsonify(cookies=request.cookies.to_dict())


@app.get("/café")
def cafe_view():
    return Response("un café, s'il vous plaît\n", mimetype="text/plain")
