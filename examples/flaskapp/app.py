"""A small Flask app served by frontdesk: one HTML page with its static assets, a JSON API, a form.

    pip install -r requirements.txt
    frontdesk app:app --static /static=static

frontdesk answers /static/... itself, from the `static/` directory, in its event loop (no app
thread, sendfile, ETag and Range); Flask only sees the other requests. (Flask would serve the
same files itself under `flask run`, so the app works in development too.)
"""

from __future__ import annotations

import datetime
import os

from flask import Flask, jsonify, redirect, render_template, request, url_for

app = Flask(__name__)

# Guest book entries, kept in memory: a demo, one per worker process.
messages: list[dict[str, str]] = []


@app.get("/")
def index():
    return render_template("index.html", messages=messages[-10:], pid=os.getpid())


@app.get("/api/time")
def api_time():
    now = datetime.datetime.now(datetime.timezone.utc)
    return jsonify(utc=now.isoformat(timespec="seconds"), unix=int(now.timestamp()),
                   served_by=os.getpid())


@app.post("/guestbook")
def guestbook():
    name = request.form.get("name", "").strip()[:40] or "anonymous"
    text = request.form.get("message", "").strip()[:280]
    if not text:
        return render_template("index.html", messages=messages[-10:], pid=os.getpid(),
                               error="Please write a message."), 400
    messages.append({"name": name, "message": text})
    return redirect(url_for("index"), code=303)  # POST/redirect/GET: reloading does not re-post
